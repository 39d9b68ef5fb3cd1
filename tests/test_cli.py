"""The ``botyard`` command line, run as a user would: exit codes and messages, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from botyard.pipelines.cli import main


def _botyard(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "botyard.pipelines.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_bad_data_exits_2_with_the_validation_message(tmp_path):
    bad = tmp_path / "bot.csv"
    bad.write_text("text,intent\nhello,greet\nhi,greet\n,greet\n")
    result = _botyard("run", "--data", str(bad), "--models-root", str(tmp_path / "m"), "--pipeline-root", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "bot.csv: training data is invalid" in result.stderr
    assert "empty utterance in row 4" in result.stderr
    assert "found 1 intent(s) ['greet']" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "m").exists()  # nothing ran, nothing written
    # a user's own data is never trained as the sample bot: without --bot-id the bot is named after its file
    assert "training bot 'bot' (named after its training file; --bot-id names it)" in result.stdout


@pytest.mark.parametrize(
    "data, bot_id",
    [(None, "sample-bot"), ("pizza-bot.csv", "pizza-bot"), ("/data/Pizza_Bot.v2.jsonl", "pizza-bot"),
     ("s3://bots/coffee/nlu.yml", "nlu"), ("gs://b/" + "x" * 80 + ".csv", "x" * 63), ("data_full.json", "data-full")],
)
def test_run_names_the_bot_after_its_training_file(data, bot_id):
    from botyard.pipelines.commands.run import bot_id_for

    assert bot_id_for(data) == bot_id


def test_a_file_name_that_makes_no_bot_id_asks_for_one(tmp_path, capsys):
    data = tmp_path / "___.csv"
    data.write_text("text,intent\n")
    assert main(["run", "--data", str(data), "--models-root", str(tmp_path / "m")]) == 2
    assert "botyard: error: cannot name a bot after the file '___.csv'; name it with --bot-id" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_every_command_that_takes_one_bot_accepts_bot_and_bot_id(tmp_path, capsys):
    for flag in ("--bot", "--bot-id"):
        assert main(["rollback", flag, "pizza", "--models-root", str(tmp_path)]) != 0
        assert "bot 'pizza' has no model version" in capsys.readouterr().err
    assert main(["run", "--bot", "Bad_Bot"]) == 2
    assert "bot id 'Bad_Bot' is not valid" in capsys.readouterr().err


def test_label_conflict_fails_by_default_and_names_the_way_through(tmp_path):
    data = tmp_path / "bot.csv"
    rows = [(f"hello {n}", "greet") for n in range(5)] + [(f"bye {n}", "bye") for n in range(5)] + [("Hello 0", "bye")]
    data.write_text("text,intent\n" + "".join(f"{t},{i}\n" for t, i in rows))
    result = _botyard("run", "--data", str(data), "--models-root", str(tmp_path / "m"), "--pipeline-root", str(tmp_path / "r"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("utterance 'hello 0' is labelled with different intents: 'bye' (row 12); 'greet' (row 2); keep one label "
            "(or run with on_label_conflict=warn or drop)") in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--bot-id", "Bad_Bot"], "bot id 'Bad_Bot' is not valid"),
        (["run", "--param", "epochs=ten"], "--param epochs: 'ten' is not a valid Integer"),
        (["run", "--param", "colour=blue"], "--param 'colour=blue': unknown parameter 'colour'; known: ["),
        (["run", "--param", "epoch=5"], "--param 'epoch=5': unknown parameter 'epoch' (did you mean 'epochs'?); known: ["),
        (["run", "--param", "epochs"], "--param 'epochs': expected KEY=VALUE, e.g. --param epochs=20"),
        (["run", "--param", "on_label_conflict=ignore"], "--param on_label_conflict='ignore' is not allowed; use one of fail, warn, drop"),
        (["compile", "--gpus", "0", "--output-dir", "{tmp}"], "botyard: error: --gpus 0 is out of range"),
        (["fleet", "--bots", "{tmp}/bots.json", "--parallelism", "0"], "botyard: error: --parallelism 0 is out of range; allowed: 1 to 256"),
        # values the steps would refuse minutes into the run are refused before it starts
        (["run", "--param", "epochs=0"], "botyard: error: --param epochs=0 is out of range; allowed: 1 to 1000"),
        (["run", "--param", "entity_epochs=0"], "botyard: error: --param entity_epochs=0 is out of range; allowed: 1 to 1000"),
        (["run", "--param", "min_accuracy=2"], "botyard: error: --param min_accuracy=2.0 is out of range; allowed: 0 to 1, or unset"),
        (["run", "--param", "val_fraction=0.9"], "botyard: error: --param val_fraction=0.9 is out of range; allowed: 0.0 to 0.5"),
        # errors name the flag typed, not the config field behind it
        (["bench", "--set", "epoc=3"], "botyard: error: --set: unknown TrainConfig field(s) 'epoc' (did you mean 'epochs'?)"),
        (["bench", "--set", "epochs=0"], "botyard: error: --set epochs=0 is out of range; allowed: 1 to 1000"),
        (["bench", "--set", "epochs=ten"], "botyard: error: --set epochs='ten' is not a number; allowed: 1 to 1000"),
        (["serve", "--models-root", "{tmp}", "--port", "99999"], "botyard: error: --port 99999 is out of range; allowed: 1 to 65535"),
        (["serve", "--models-root", "{tmp}", "--port", "8080", "--grpc-port", "8080"], "--grpc-port equals --port (8080)"),
        (["serve", "--models-root", "{tmp}", "--body-timeout", "0"], "botyard: error: --body-timeout 0.0 is out of range"),
    ],
)
def test_bad_arguments_get_a_clear_error(tmp_path, capsys, args, message):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and message in err


def test_a_bad_registry_from_the_environment_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BOTYARD_IMAGE_REGISTRY", "Bad Registry")
    assert main(["compile", "--output-dir", str(tmp_path)]) == 2
    assert "botyard: error: $BOTYARD_IMAGE_REGISTRY 'Bad Registry' is not a registry" in capsys.readouterr().err


def test_compile_writes_every_pipeline(tmp_path, capsys):
    assert main(["compile", "--output-dir", str(tmp_path), "--no-gpu"]) == 0
    assert (tmp_path / "bot_training.yaml").exists()
    assert str(tmp_path / "bot_training.yaml") in capsys.readouterr().out


def test_help_lists_commands():
    result = _botyard("--help")
    assert result.returncode == 0
    for command in ("run", "compile"):
        assert command in result.stdout


def test_a_folder_that_cannot_be_written_is_named_without_a_traceback(tmp_path):
    blocker = tmp_path / "build"
    blocker.write_text("a file where the output folder should go")
    result = _botyard("compile", "--output-dir", str(blocker / "pipelines"))
    assert result.returncode == 2
    assert f"botyard: error: --output-dir {blocker / 'pipelines'}: cannot create the folder (Not a directory)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("command", ["status", "trigger-server"])
def test_a_database_that_cannot_be_reached_is_named_without_its_password(command, monkeypatch):
    from botyard.components.base.net import free_port

    monkeypatch.setenv("BOTYARD_WEBHOOK_SECRET", "0" * 64)
    port = free_port("127.0.0.1")  # nothing listens there
    extra = ["--dev", "--port", str(free_port("127.0.0.1"))] if command == "trigger-server" else []
    result = _botyard(command, *extra, "--db-url", f"postgresql://botyard:s3cret@127.0.0.1:{port}/events")
    assert result.returncode == 2
    assert f"botyard: error: cannot reach the trigger database at postgresql://botyard:***@127.0.0.1:{port}/events: " in result.stderr
    assert "Connection refused" in result.stderr and "check --db-url and that the database server is up" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr + result.stdout


def test_a_failed_local_run_names_the_step_and_its_error_without_colour_codes(tmp_path):
    """What ``botyard run`` prints when a step fails: the step and the exception it ended with,
    read from the end of the run's log, not kfp.local's coloured summary alone."""
    from botyard.pipelines.local_run import failure_reason

    log = tmp_path / "run.log"
    log.write_text(
        "    Traceback (most recent call last):\n"
        '      File "/work/main/components/gate/core.py", line 50, in __post_init__\n'
        '        raise ConfigError(f"GateConfig.{name} = {value!r} is out of range")\n'
        "    botyard.components.base.errors.ConfigError: GateConfig.min_accuracy = 2.0 is out of range; allowed: 0 to 1\n"
        "    \n"
        "\x1b[91mTask 'gate' finished with status FAILURE\x1b[0m\n"
    )
    kfp_error = RuntimeError(
        "Pipeline \x1b[95m'bot-training'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. Inner task failed: \x1b[96m'gate'\x1b[0m."
    )
    assert failure_reason(kfp_error, str(log)) == (
        "step 'gate' failed: ConfigError: GateConfig.min_accuracy = 2.0 is out of range; allowed: 0 to 1"
    )
    # no exception in the log (or no log): kfp.local's own message, its colour codes removed
    assert failure_reason(kfp_error, str(tmp_path / "absent.log")) == (
        "Pipeline 'bot-training' finished with status FAILURE. Inner task failed: 'gate'."
    )


def test_run_serve_suggests_a_curl_line_with_one_of_the_bots_own_utterances():
    """``botyard run --serve`` prints a curl line to try the bot: with an utterance of its own data
    (one with entity spans first), quoted so that a shell sends exactly that JSON body."""
    import json
    import shlex

    from botyard.components.base import contracts as c
    from botyard.components.base.table import make_table
    from botyard.pipelines.commands.run import curl_example
    from botyard.pipelines.local_run import SAMPLE_EXAMPLE, example_utterance

    spans = [{"start": 11, "end": 16, "value": "pizza", "entity": "food"}]
    table = make_table([{c.UTTERANCE: "hello there", c.INTENT: "greet"}, {c.UTTERANCE: "I'd like a pizza", c.INTENT: "order", c.ENTITIES: spans}])
    assert example_utterance(table) == "I'd like a pizza"
    assert example_utterance(table.head(1)) == "hello there"
    assert example_utterance(table.head(0)) == SAMPLE_EXAMPLE
    line = curl_example(8080, "pizza-bot", "I'd like a pizza 🍕")
    assert line.startswith("curl -s -X POST http://127.0.0.1:8080/v1/models/pizza-bot:predict ")
    body = shlex.split(line)[-1]  # what a shell passes to curl's -d
    assert json.loads(body) == {"instances": ["I'd like a pizza 🍕"]}
