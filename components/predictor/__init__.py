"""botyard's model server: one KServe ``ModelServer`` serving every bot of a model store.

Modules, one job each:

* ``config``  -- ``ServeConfig`` and the command-line flags (``botyard serve`` and
  ``python -m botyard.components.predictor`` share them).
* ``reload``  -- discovery and hot reload: which bots the store holds, which promoted version
  each serves, loading and swapping versions on the loader thread.
* ``model``   -- ``BotModel`` (a ``kserve.Model``), one per bot: request parsing, limits,
  the answer layout; it answers with one immutable loaded version.
* ``errors``  -- the one place that turns request errors into HTTP (and gRPC) statuses.
* ``metrics`` -- the Prometheus series and the per-bot request-counting middleware.
* ``wiring``  -- KServe's data plane and REST / gRPC servers, adapted to botyard.
* ``server``  -- ``PredictorServer`` (puts the pieces together and runs them) and ``serve``.
* ``main``    -- the process entry point (``__main__``): flags in, exit code out.

Loading a version goes through ``botyard.components.base.model_io.load_version`` and the
store through ``base.model_store.ModelStore``; the HTTP client and the subprocess harness
are ``botyard.components.base.predictor_client``.

Importing this package (and ``config``) is cheap; modules that need KServe call
``import_kserve()`` first.
"""

from __future__ import annotations

import sys


def import_kserve():
    """Import ``kserve`` with an empty command line.

    ``kserve.model_server`` parses ``sys.argv`` when imported (its own flags such as
    ``--http_port``); botyard's arguments are not meant for it, so hide them.
    """
    if "kserve.model_server" not in sys.modules:
        saved = sys.argv
        sys.argv = saved[:1]
        try:
            import kserve.model_server  # noqa: F401
        finally:
            sys.argv = saved
    import kserve

    return kserve
