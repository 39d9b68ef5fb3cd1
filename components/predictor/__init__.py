"""botyard's model server: one KServe ``ModelServer`` serving every bot of a model store.

Modules:

* ``model``   -- ``BotModel`` (a ``kserve.Model``), one per bot, holding the loaded version
  it answers with; ``load_version`` loads, checks and warms up one model version.
* ``server``  -- ``ServeConfig``, ``PredictorServer`` (discovery, polling, hot swap, the
  REST/gRPC servers), ``serve`` (blocking) and ``start_predictor`` (a subprocess, as a
  context manager, for the infra check and tests).
* ``errors``  -- the one place that turns request errors into HTTP statuses.
* ``warmup``  -- TF Serving warm-up files (``assets.extra/tf_serving_warmup_requests``).

Importing this package is cheap: ``warmup`` is used by the train step, which must not pay
for KServe. Modules that need KServe call ``import_kserve()`` first.
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
