"""The gate's verdict is kept beside each version; ``botyard rollback`` to a rejected version needs ``--force``."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from botyard.components.base import contracts as c
from botyard.components.base.model_store import ModelStore
from botyard.components.base.table import make_table, write_table
from botyard.components.gate.core import GateConfig, gate
from botyard.pipelines.cli import main

from conftest import tiny_rows


def _meta():
    return {c.DATA_HASH: "cd" * 32, c.LABELS: ["bye", "greet"], c.OOS_THRESHOLD: 0.5, c.HYPERPARAMETERS: {}, c.METRICS: {}}


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    saved_model = tmp_path / "sm"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"x")
    root = str(tmp_path / "models") if request.param == "local" else f"s3://{request.getfixturevalue('s3')}/models"
    store = ModelStore(root)
    store.saved_model = str(saved_model)
    return store


def _gate(store: ModelStore, version: str, accuracy: float, tmp_path) -> bool:
    """The gate step on a first run (no live version): only ``min_accuracy`` = 0.5 applies."""
    evaluation = tmp_path / f"evaluation-{version}"
    evaluation.mkdir()
    (evaluation / c.EVALUATION_FILE).write_text(json.dumps({c.METRICS: {"accuracy": accuracy, "macro_f1": accuracy}}))
    test = str(tmp_path / "test.jsonl")
    write_table(make_table(tiny_rows(intents=("greet", "bye"), per_intent=2)), test)
    blessing_dir = tmp_path / f"blessing-{version}"
    blessing_dir.mkdir()
    config = GateConfig(min_accuracy=0.5, max_accuracy_drop=None, max_intent_recall_drop=None)
    return gate(store.root, "bot-a", version, str(evaluation), test, config, str(blessing_dir), str(tmp_path / "report.md")).blessed


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_gate_records_its_verdict_and_rollback_to_a_rejected_version_needs_force(store, tmp_path):
    good = store.register("bot-a", store.saved_model, _meta())
    bad = store.register("bot-a", store.saved_model, _meta())
    newest = store.register("bot-a", store.saved_model, _meta())
    assert _gate(store, good, 0.9, tmp_path) is True
    assert _gate(store, bad, 0.3, tmp_path) is False
    assert _gate(store, newest, 0.8, tmp_path) is True
    recorded = ModelStore(store.root).verdict("bot-a", bad)
    assert recorded["blessed"] is False and recorded[c.VERSION] == bad and recorded[c.JUDGED_AT]
    assert recorded["reasons"] == ["FAIL: accuracy 0.300 >= minimum 0.500", "first run: no live version, so only value thresholds apply"]
    assert recorded["candidate"]["accuracy"] == 0.3
    store.promote("bot-a", newest)

    code, out, err = _cli("rollback", "--bot", "bot-a", "--to", bad, "--models-root", store.root)
    assert code == 4 and out == ""
    assert err == (
        f"botyard: error: bot 'bot-a': model version {bad} was rejected by the promotion gate on {recorded[c.JUDGED_AT]} "
        "(FAIL: accuracy 0.300 >= minimum 0.500); pass --force to roll back to it anyway\n"
    )
    assert store.current("bot-a") == newest  # nothing moved

    # no --to: the newest older version the gate did not reject (the rejected one was never live)
    code, out, _ = _cli("rollback", "--bot", "bot-a", "--models-root", store.root)
    assert code == 0 and out == f"bot 'bot-a': now serving {good} (was {newest}) [local]\n"

    code, out, _ = _cli("rollback", "--bot", "bot-a", "--to", bad, "--models-root", store.root, "--force")
    assert code == 0 and store.current("bot-a") == bad
    assert out == (
        f"bot 'bot-a': now serving {bad} (was {good}) [local]\n"
        f"warning: version {bad} was rejected by the promotion gate (FAIL: accuracy 0.300 >= minimum 0.500); serving it because of --force\n"
    )
    code, out, _ = _cli("rollback", "--bot", "bot-a", "--to", bad, "--models-root", store.root, "--force")
    assert code == 0 and out.startswith(f"bot 'bot-a': still serving {bad} (it was already the live version; applied again) [local]\n")


def test_rollback_with_only_rejected_older_versions_says_so(store, tmp_path):
    bad = store.register("bot-a", store.saved_model, _meta())
    live = store.register("bot-a", store.saved_model, _meta())
    _gate(store, bad, 0.1, tmp_path)
    store.promote("bot-a", live)
    code, _, err = _cli("rollback", "--bot", "bot-a", "--models-root", store.root)
    assert code == 3
    assert err == (
        f"botyard: error: bot 'bot-a' has no model version older than {live} to roll back to that the promotion "
        "gate did not reject (1 rejected; name one with --to and --force)\n"
    )
