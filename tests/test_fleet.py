"""The fleet pipeline: its compiled YAML, the fleet cores, and one local run of three bots, one broken.

The YAML is compiled fresh in each test (``botyard compile --output-dir DIR`` writes the same
``fleet_training.yaml``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os

import pytest
import yaml

from botyard.components.base import contracts as c
from botyard.components.base.model_store import ModelStore
from botyard.components.base.config import GpuConfig
from botyard.components.base.errors import ConfigError
from botyard.components.fleet import core
from botyard.pipelines.bot_training import bot_training
from botyard.pipelines.cli import main
from botyard.pipelines.fleet_training import build_fleet_training, fleet_training
from botyard.pipelines.builders import compile_all

from conftest import tiny_rows

TINY = {"epochs": 2, "embedding_dim": 8, "lstm_units": 8, "max_ngrams": 200, "max_char_ngrams": 200, "ngram_units": 8,
        "max_tokens": 500, "sequence_length": 12, "batch_size": 64, "patience": 1,
        "min_accuracy": 1.0}  # the promotion gate (almost surely) refuses: no infra check or deploy, a shorter run


def _csv(path, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "intent"])
        for r in rows:
            w.writerow([r["utterance"], r["intent"]])
    return str(path)


# --- compiled YAML -------------------------------------------------------------------------------


def _docs(path):
    docs = list(yaml.safe_load_all(open(path)))
    return docs[0], (docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {})


def test_compile_writes_fleet_training_with_parallelism_and_gpu_train(tmp_path):
    paths = compile_all(str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["bot_training.yaml", "fleet_training.yaml"]
    spec, platform = _docs(paths[1])
    assert spec["pipelineInfo"]["name"] == "fleet-training"
    (loop,) = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert loop["iteratorPolicy"] == {"parallelismLimit": core.DEFAULT_PARALLELISM}
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--bots"
    summary = spec["root"]["dag"]["tasks"]["summarise-fleet"]
    assert summary["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}  # runs even if a bot crashed
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert (resources["accelerator"]["resourceType"], resources["accelerator"]["resourceCount"]) == ("nvidia.com/gpu", "1")
    assert platform["exec-train"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    gated = [e for e, x in spec["deploymentSpec"]["executors"].items() if "accelerator" in x["container"].get("resources", {})]
    assert gated == ["exec-train"]


def test_parallelism_and_gpu_settings_are_compile_time(tmp_path):
    from kfp import compiler

    path = str(tmp_path / "fleet.yaml")
    compiler.Compiler().compile(build_fleet_training(GpuConfig(enabled=False), parallelism=7), package_path=path)
    spec, platform = _docs(path)
    (loop,) = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 7
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"] and platform == {}
    for bad in (0, 257, True, "4"):
        with pytest.raises(ConfigError, match="parallelism = .* is out of range; allowed: 1 to 256"):
            build_fleet_training(parallelism=bad)


def test_fleet_takes_bot_trainings_inputs_with_the_same_defaults():
    fleet_inputs = fleet_training.component_spec.inputs
    bot_inputs = bot_training.component_spec.inputs
    assert set(fleet_inputs) == (set(bot_inputs) - {"bot_id", "data_uri"}) | {"bots"}
    for name, spec in fleet_inputs.items():
        if name != "bots":
            assert (spec.type, spec.default) == (bot_inputs[name].type, bot_inputs[name].default), name
    assert fleet_inputs["bots"].type == "List" and fleet_inputs["bots"].default is None


# --- cores ---------------------------------------------------------------------------------------


def test_a_bots_file_of_the_wrong_shape_says_what_it_holds(tmp_path):
    (tmp_path / "bots.json").write_text('{"bot": [{"bot_id": "a", "data_uri": "x.csv"}]}')
    with pytest.raises(ConfigError) as err:
        core.read_bots_file(str(tmp_path / "bots.json"))
    assert str(err.value) == f"{tmp_path / 'bots.json'}: expected a list of bots or {{\"bots\": [...]}}; the object's keys are ['bot']"


def test_bots_file_json_and_csv_resolve_relative_paths(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "bots.json").write_text(json.dumps({"bots": [{"bot_id": "a", "data_uri": "data/a.csv"}, {"bot_id": "b", "data_uri": "gs://x/b.yml"}]}))
    (tmp_path / "bots.csv").write_text("bot_id,data_uri\na,data/a.csv\nb,/abs/b.csv\n")
    assert core.read_bots_file(str(tmp_path / "bots.json")) == [
        {"bot_id": "a", "data_uri": str(tmp_path / "data" / "a.csv")}, {"bot_id": "b", "data_uri": "gs://x/b.yml"}]
    assert core.read_bots_file(str(tmp_path / "bots.csv"))[1] == {"bot_id": "b", "data_uri": "/abs/b.csv"}


@pytest.mark.parametrize(
    "items, message",
    [
        ([], "the bot list is empty"),
        ({"bots": [{"bot_id": "a", "data_uri": "x.csv"}]}, "expected a list of bots, [{\"bot_id\": ..., \"data_uri\": ...}, ...]; got an object"),
        ([{"bot_id": "a"}], "bot #1: missing ['data_uri']"),
        ([{"bot_id": "a", "data_uri": "x.csv", "colour": "red"}], "bot #1: unknown field(s) 'colour'; known: ['bot_id', 'data_uri']"),
        ([{"bot_id": "a", "data": "x.csv"}], "bot #1: unknown field(s) 'data' (did you mean 'data_uri'?)"),
        ([{"bot_id": "a", "data_uri": "x.csv"}, {"bot_id": "a", "data_uri": "y.csv"}], "bot #2: bot id 'a' appears more than once"),
        ([{"bot_id": "Bad Bot", "data_uri": "x.csv"}], "bot id 'Bad Bot' is not valid"),
        (["a"], "bot #1: expected an object"),
    ],
)
def test_bad_bot_lists_are_refused(items, message):
    with pytest.raises(ConfigError) as err:
        core.parse_bots(items)
    assert message in str(err.value)


def test_the_data_check_turns_bad_data_into_a_failed_outcome(tmp_path):
    ok = core.check_bot_data("a", _csv(tmp_path / "a.csv", tiny_rows()))
    assert ok["status"] == "ready" and len(ok["data_hash"]) == 64
    bad = core.check_bot_data("b", _csv(tmp_path / "b.csv", tiny_rows(intents=("greet",), per_intent=3)))
    assert (bad["status"], bad["stage"]) == ("failed", "validate") and "found 1 intent(s) ['greet']" in bad["reason"]
    missing = core.check_bot_data("c", str(tmp_path / "nope.csv"))
    assert (missing["stage"], missing["status"]) == ("ingest", "failed") and "cannot read the file" in missing["reason"]
    assert core.check_bot_data("Bad", "x.csv")["stage"] == "bot_id"


def test_summary_lists_every_bot_in_order_and_counts_missing_outcomes_as_failed():
    bots = [{"bot_id": b, "data_uri": f"{b}.csv"} for b in ("a", "b", "c", "d")]
    outcomes = [
        json.dumps({"bot_id": "c", "status": "failed", "stage": "validate", "reason": "too few | examples"}),
        json.dumps({"bot_id": "a", "status": "succeeded", "version": "v1", "metrics": {"accuracy": 0.9, "macro_f1": 0.8}, "live": True}),
        json.dumps({"bot_id": "d", "status": "ready"}),  # checked, but its training never reported
        "not json",
    ]
    s = core.summarise(bots, outcomes)
    assert (s["bots"], s["succeeded"], s["failed"]) == (4, 1, 3)
    assert [o["bot_id"] for o in s["outcomes"]] == ["a", "b", "c", "d"]
    assert s["outcomes"][1]["reason"] == s["outcomes"][3]["reason"] == core.NO_OUTCOME_REASON
    md = core.summary_markdown(s)
    assert md.startswith("# Fleet training: 1 of 4 bots succeeded")
    assert "| a | succeeded | v1 | yes | 0.900 | 0.800 |  |" in md
    assert "| c | failed |  |  |  |  | validate: too few \\| examples |" in md


# --- a local run ---------------------------------------------------------------------------------


def _fleet_run(root):
    """``botyard fleet`` on three tiny bots, the middle one with bad data (one intent, 3 examples)."""
    (root / "data").mkdir()
    _csv(root / "data" / "alpha.csv", tiny_rows())
    _csv(root / "data" / "broken.csv", tiny_rows(intents=("greet",), per_intent=3))
    _csv(root / "data" / "gamma.csv", tiny_rows(intents=("greet", "bye")))
    bots = [{"bot_id": b, "data_uri": f"data/{b}.csv"} for b in ("alpha", "broken", "gamma")]
    (root / "bots.json").write_text(json.dumps(bots))
    args = ["fleet", "--bots", str(root / "bots.json"), "--parallelism", "2",
            "--models-root", str(root / "models"), "--pipeline-root", str(root / "runs")]
    for key, value in TINY.items():
        args += ["--param", f"{key}={value}"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return {"root": root, "code": code, "out": out.getvalue()}


@pytest.mark.slow
def test_one_broken_bot_does_not_stop_the_others(tmp_path):
    """One test, not several over a module fixture: under pytest-xdist each worker would run the fleet again."""
    fleet_run = _fleet_run(tmp_path)
    root, out = fleet_run["root"], fleet_run["out"]
    assert fleet_run["code"] == 1, out  # one bot failed
    for bot in ("alpha", "gamma"):
        (version,) = ModelStore(str(root / "models")).versions(bot)
        meta = json.load(open(root / "models" / bot / version / c.METADATA_FILE))
        assert meta[c.BOT_ID] == bot and 0.0 <= meta[c.METRICS]["accuracy"] <= 1.0
    assert not (root / "models" / "broken").exists()

    (summary_path,) = [os.path.join(d, f) for d, _, files in os.walk(root / "runs") for f in files if f == core.SUMMARY_FILE]
    summary = json.load(open(summary_path))
    assert (summary["bots"], summary["succeeded"], summary["failed"]) == (3, 2, 1)
    alpha, broken, gamma = summary["outcomes"]
    assert alpha["status"] == gamma["status"] == "succeeded"
    assert alpha["version"] in os.listdir(root / "models" / "alpha")
    assert set(alpha["metrics"]) == {"accuracy", "macro_f1", "test_size"} and len(alpha["data_hash"]) == 64
    assert (broken["bot_id"], broken["status"], broken["stage"]) == ("broken", "failed", "validate")
    assert broken["reason"].startswith(f"{root / 'data' / 'broken.csv'}: training data is invalid (2 problem(s)):")
    assert "found 1 intent(s) ['greet']; a bot needs at least 2 intents" in broken["reason"]
    assert "intent 'greet' has only 3 training example(s), minimum is 5" in broken["reason"]

    report = open(os.path.join(os.path.dirname(os.path.dirname(summary_path)), "report")).read()
    assert report.startswith("# Fleet training: 2 of 3 bots succeeded")
    assert "| broken | failed |" in report and "found 1 intent(s) ['greet']" in report

    # the console: one line per step, then the outcome table
    assert "training 3 bot(s) locally through kfp.local, 2 at a time" in out
    assert "Executing task check-bot" in out and "Task train finished with status SUCCESS" in out
    assert "Pipeline fleet-training finished with status SUCCESS" in out
    rows = {}
    for line in out.splitlines():
        if line.split() and line.split()[0] in ("alpha", "broken", "gamma"):
            rows.setdefault(line.split()[0], line.split())  # the table's row (the first line naming the bot)
    assert rows["alpha"][1:3] == ["succeeded", alpha["version"]] and rows["gamma"][1] == "succeeded"
    assert rows["broken"][1:3] == ["failed", "-"] and "validate:" in rows["broken"]
    assert f"broken failed at validate: {root / 'data' / 'broken.csv'}: training data is invalid" in out  # in full below
    assert "2 of 3 bots succeeded" in out and "executor_input" not in out  # step noise stays in the log file
    assert "Skipping conditional task" not in out and "\n    BOT" not in out  # kfp.local's thread leaks are contained
