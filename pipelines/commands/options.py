"""What the ``botyard`` commands share: KEY=VALUE parsing, the ``--param`` check, tables, the KFP host flag.

Every command module parses its own flags with argparse and calls these for the parts that
would otherwise be written twice; each raises ``ConfigError`` (exit code 2) with the flag named.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from datetime import datetime
from typing import Callable

from botyard.components.base.config import unknown_names
from botyard.components.base.errors import ConfigError

HOST_ENV = "KF_PIPELINES_ENDPOINT"  # kfp.Client's own variable for the endpoint
MAX_CELL = 60  # longer table cells (error messages) are cut with "..."
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")


# --- KEY=VALUE -----------------------------------------------------------------------------------
def key_value(text: str, flag: str) -> tuple[str, str]:
    """``("KEY", "VALUE")`` from ``KEY=VALUE``; ``ConfigError`` naming ``flag`` otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    return key.strip(), value


def json_overrides(pairs: list[str], flag: str) -> dict:
    """``KEY=VALUE`` pairs with each value read as JSON when it is JSON (``5``, ``true``), else kept as text."""
    out = {}
    for pair in pairs:
        key, raw = key_value(pair, flag)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def parse_parameters(pairs: list[str]) -> dict:
    """``--param KEY=VALUE`` pipeline parameters checked against bot_training's inputs, typed as the pipeline declares them."""
    from botyard.pipelines.kfp.parameters import pipeline_inputs

    known = pipeline_inputs()
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param epochs=20")
        if key not in known:
            raise ConfigError(f"--param {pair!r}: unknown parameter {unknown_names([key], known)}")
        params[key] = _typed(key, raw, known[key])
    return params


def _typed(key: str, raw: str, kind: str):
    try:
        if kind == "Integer":
            return int(raw)
        if kind == "Float":
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"--param {key}: {raw!r} is not a valid {kind}") from exc
    if kind == "Boolean":
        if raw.lower() in TRUE_WORDS:
            return True
        if raw.lower() in FALSE_WORDS:
            return False
        raise ConfigError(f"--param {key}: {raw!r} is not a valid Boolean (true or false)")
    return raw


def load_callable(spec: str, flag: str) -> Callable:
    """``module:function`` imported; ``ConfigError`` naming ``flag`` otherwise."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"{flag} {spec!r}: expected MODULE:FUNCTION, e.g. mypackage.backend:submit")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{flag} {spec!r}: cannot import it ({exc})") from exc
    if not callable(fn):
        raise ConfigError(f"{flag} {spec!r} is not callable")
    return fn


# --- the KFP endpoint ---------------------------------------------------------------------------
def add_kfp_arguments(parser, *, host_help: str = "KFP endpoint, e.g. http://localhost:8080", default=None, host_flag: str = "--host") -> None:
    """``--host`` (or ``host_flag``), ``--namespace`` and ``--token-file``: where the KFP API is and who calls it.

    ``default=argparse.SUPPRESS`` for sub-commands, so values given before the action are kept.
    """
    from botyard.pipelines.kfp.client import COOKIES_ENV, SA_TOKEN_PATH_ENV, TOKEN_ENV

    keep = default is argparse.SUPPRESS
    parser.add_argument(host_flag, dest="host" if host_flag == "--host" else host_flag.lstrip("-").replace("-", "_"),
                        default=default if keep else os.environ.get(HOST_ENV), metavar="URL",
                        help=f"{host_help} (default: ${HOST_ENV})")
    parser.add_argument("--namespace", default=default, metavar="NS",
                        help="the Kubeflow profile namespace to work in; required by a multi-user KFP (e.g. kubeflow-user-example-com)")
    parser.add_argument("--token-file", default=default, metavar="PATH",
                        help=f"a service-account token to authenticate with (default: the path in ${SA_TOKEN_PATH_ENV}, as kfp "
                        f"does); or set ${TOKEN_ENV} (a bearer token) or ${COOKIES_ENV} (the auth proxy's session cookie)")


def kfp_endpoint(args: argparse.Namespace, host_attr: str = "host"):
    """The ``KfpEndpoint`` the KFP flags name (credentials from the environment for the rest); None without a host."""
    from botyard.pipelines.kfp.client import KfpEndpoint

    host = getattr(args, host_attr, None)
    if not host:
        return None
    return KfpEndpoint.from_environment(host, namespace=getattr(args, "namespace", None), token_file=getattr(args, "token_file", None))


def add_service_account_argument(parser) -> None:
    from botyard.pipelines.kfp.naming import DEFAULT_SERVICE_ACCOUNT

    parser.add_argument("--service-account", default=None, metavar="NAME",
                        help=f"Kubernetes service account the runs execute as (default: {DEFAULT_SERVICE_ACCOUNT} on a multi-user "
                        "KFP, the server's own default on a single-user one)")


# --- tables ----------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list]) -> str:
    """A plain-text table: one header line, one line per row, columns padded to their widest cell."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.3f}"
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
