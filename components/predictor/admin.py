"""The admin surface: KServe's model-repository extension, off unless a token is configured.

KServe registers ``POST /v2/repository/models/<bot>/load`` and ``.../unload`` (and the gRPC
``RepositoryModelLoad`` / ``RepositoryModelUnload``) with no authentication: anyone who can
reach the predictor could unload any bot. botyard replaces them:

* by default every load / unload is refused with 403 and a message (REST and gRPC); the pool
  decides what is loaded, and what is served changes only by promotion (``CURRENT``);
* with ``--model-repository-token-file PATH``, REST requests carrying ``Authorization:
  Bearer <token>`` (compared in constant time) may load a bot ahead of its first request or
  evict it. Even then nothing can take a bot offline: an evicted bot loads again on its next
  request. gRPC stays refused (it carries no token here).
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import Request

from botyard.components.base.errors import ConfigError, ForbiddenError

LOAD_PATH = "/v2/repository/models/{model_name}/load"
UNLOAD_PATH = "/v2/repository/models/{model_name}/unload"
_DISABLED = (
    "the model-repository extension is off on this predictor: it loads bots on demand and evicts them itself, "
    "and what it serves changes only by promotion (start it with --model-repository-token-file to allow load "
    "and unload)"
)


def read_token(path: str) -> str:
    """The bearer token in ``path`` (``""`` when no path is given)."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"--model-repository-token-file {path}: cannot read it ({exc.strerror})") from exc
    if len(token) < 16:
        raise ConfigError(f"--model-repository-token-file {path}: the token must have at least 16 characters")
    return token


def _authorize(token: str, authorization: str | None) -> None:
    if not token:
        raise ForbiddenError(_DISABLED)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ForbiddenError("model-repository requests need 'Authorization: Bearer <token>' with this predictor's token")


def install_repository_routes(app, pool, token_file: str) -> None:
    """Replace KServe's unauthenticated load / unload routes on ``app``."""
    from kserve.errors import ModelNotFound

    token = read_token(token_file)

    async def load(model_name: str, request: Request) -> dict:
        _authorize(token, request.headers.get("authorization"))
        if not pool.is_known(model_name):
            raise ModelNotFound(model_name)
        job = pool.load_ahead(model_name, "repository")
        if job is not None:
            await asyncio.wrap_future(job)
        return {"name": model_name, "load": True}

    async def unload(model_name: str, request: Request) -> dict:
        _authorize(token, request.headers.get("authorization"))
        if not pool.is_known(model_name):
            raise ModelNotFound(model_name)
        pool.evict(model_name, "repository_unload")
        return {"name": model_name, "unload": True}

    # Put before KServe's routes (FastAPI keeps those inside an included router): the first match answers.
    before = len(app.router.routes)
    app.add_api_route(LOAD_PATH, load, methods=["POST"])
    app.add_api_route(UNLOAD_PATH, unload, methods=["POST"])
    ours = app.router.routes[before:]
    app.router.routes[:] = ours + app.router.routes[:before]


def refusing_repository_extension(repository):
    """KServe's ``ModelRepositoryExtension`` for gRPC, refusing every load and unload."""
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    class RefusingExtension(ModelRepositoryExtension):
        async def load(self, model_name: str) -> None:
            raise ForbiddenError(_DISABLED.replace("(start it with --model-repository-token-file", "(REST only, with --model-repository-token-file"))

        async def unload(self, model_name: str) -> None:
            raise ForbiddenError(_DISABLED.replace("(start it with --model-repository-token-file", "(REST only, with --model-repository-token-file"))

    return RefusingExtension(model_registry=repository)
