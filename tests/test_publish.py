"""CI's publishing path: `.ci/run`, `botyard compile --check` and `botyard publish`, against the KFP fake.

Regenerate nothing: the compiled YAML comes from the code under test in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest
import yaml

from botyard.components.base.errors import ConfigError
from botyard.pipelines.bench.kfp_stub import FakeKfp
from botyard.pipelines.cli import main
from botyard.pipelines.kfp import client as kfp_client
from botyard.pipelines.kfp.client import KfpEndpoint
from botyard.pipelines.kfp.publish import CREATED, UNCHANGED, UPLOADED, publish, read_compiled

from conftest import REPO

TOKEN = "ci-token"
PIPELINES = ["bot-training", "fleet-training"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("compiled") / "pipelines"
    assert main(["compile", "--output-dir", str(folder), "--no-gpu", "--check"]) == 0
    return str(folder)


@pytest.fixture
def build(compiled, tmp_path) -> str:
    folder = tmp_path / "pipelines"
    shutil.copytree(compiled, folder)
    return str(folder)


@pytest.fixture(autouse=True)
def fresh_connections():
    yield
    kfp_client.clear_connections()


def test_compiled_files_load_back_with_kfp(build):
    found = read_compiled(build)
    assert [p.name for p in found] == PIPELINES
    assert [os.path.basename(p.path) for p in found] == ["bot_training.yaml", "fleet_training.yaml"]
    assert "data_uri" in found[0].inputs and "bots" in found[1].inputs


def test_publish_creates_then_reuses_then_adds_versions(build):
    with FakeKfp() as kfp:
        first = publish(build, kfp.url, "0.2.0")
        assert [(p.pipeline, p.version, p.action) for p in first] == [(n, "0.2.0", CREATED) for n in PIPELINES]
        uploads = kfp.calls("POST", "/pipelines/upload_version")
        assert [(u.query["name"], u.query["pipelineid"]) for u in uploads] == [("0.2.0", p.pipeline_id) for p in first]
        for upload, pipeline in zip(uploads, read_compiled(build)):
            assert upload.files["uploadfile"][1].decode() == pipeline.text  # the compiled file, byte for byte
            assert kfp.versions[upload_id(kfp, upload)]["description"] == f"botyard 0.2.0; YAML sha256 {pipeline.sha256}"
        assert {v["display_name"] for v in kfp.versions.values()} == {"bot-training", "fleet-training", "0.2.0"}

        again = publish(build, kfp.url, "0.2.0")
        assert [p.action for p in again] == [UNCHANGED, UNCHANGED]
        assert [p.version_id for p in again] == [p.version_id for p in first]
        assert len(kfp.calls("POST", "/pipelines/upload_version")) == 2 and len(kfp.calls("POST", "/pipelines/upload")) == 2

        newer = publish(build, kfp.url, "0.3.0")
        assert [p.action for p in newer] == [UPLOADED, UPLOADED]
        assert len(kfp.pipelines) == 2 and len(kfp.calls("POST", "/pipelines/upload")) == 2
        assert not kfp.crashes


def upload_id(kfp, upload) -> str:
    return next(v for v, rec in kfp.versions.items() if rec["display_name"] == upload.query["name"]
                and rec["pipeline_id"] == upload.query["pipelineid"])


def test_other_content_under_a_published_version_is_refused(build):
    with FakeKfp() as kfp:
        publish(build, kfp.url, "0.2.0")
        path = os.path.join(build, "bot_training.yaml")
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n# changed\n")
        with pytest.raises(ConfigError, match=r"pipeline 'bot-training' on .* already has a version '0\.2\.0' with other content .*publish under a new --version"):
            publish(build, kfp.url, "0.2.0")
        assert len(kfp.calls("POST", "/pipelines/upload_version")) == 2


def test_publish_to_a_multi_user_server_goes_into_the_namespace(build, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with FakeKfp(multi_user=True) as kfp:
        kfp.add_identity("system:serviceaccount:team-a:ci", {"team-a"}, token=TOKEN)
        with pytest.raises(ConfigError, match="pass --namespace"):
            publish(build, KfpEndpoint(kfp.url, token_file=str(token_file)), "0.2.0")
        done = publish(build, KfpEndpoint(kfp.url, namespace="team-a", token_file=str(token_file)), "0.2.0")
        assert [p.action for p in done] == [CREATED, CREATED]
        assert {p["namespace"] for p in kfp.pipelines.values()} == {"team-a"}
        assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in kfp.requests)
        assert [p.action for p in publish(build, KfpEndpoint(kfp.url, namespace="team-a", token_file=str(token_file)), "0.2.0")] == [UNCHANGED] * 2


def test_cli_publish_prints_what_it_did(build, capsys, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    with FakeKfp() as kfp:
        assert main(["publish", "--host", kfp.url, "--version", "0.2.0", "--pipelines-dir", build]) == 0
        out = capsys.readouterr().out
        assert f"botyard: published 2 pipeline(s) from {build} to {kfp.url} as version 0.2.0" in out
        header, *rows = out.splitlines()[1:]
        assert header.split()[:3] == ["PIPELINE", "VERSION", "ACTION"]
        assert [r.split()[0] for r in rows] == PIPELINES and all("created" in r for r in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--version", "0.2.0"], "botyard publish needs --host URL"),
        (["--host", "{kfp}", "--version", "two words"], "--version 'two words' is not a valid version name"),
        (["--host", "{kfp}", "--version", "1", "--pipelines-dir", "{tmp}/nowhere"], "is not a folder; run `botyard compile --output-dir"),
        (["--host", "{kfp}", "--version", "1", "--pipelines-dir", "{tmp}/junk"], "junk/notes.yaml is not a compiled KFP pipeline kfp can load"),
    ],
    ids=["no-host", "bad-version", "no-folder", "not-a-pipeline"],
)
def test_cli_publish_refusals_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.yaml").write_text("shopping: [milk]\n")
    with FakeKfp() as kfp:
        argv = ["publish", *[a.replace("{kfp}", kfp.url).replace("{tmp}", str(tmp_path)) for a in args]]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
        assert not kfp.versions


def test_ci_run_tests_first_then_compiles_and_loads_back_every_pipeline(tmp_path):
    recorder = tmp_path / "make"
    recorder.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'make.log'}\n")
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    build = tmp_path / "build" / "pipelines"
    result = subprocess.run([str(REPO / ".ci" / "run")], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "MAKE": str(recorder), "BUILD_DIR": str(build)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "make.log").read_text() == "test\n"  # the README's test command, first
    assert sorted(os.listdir(build)) == ["bot_training.yaml", "fleet_training.yaml"]
    for name, pipeline in (("bot_training.yaml", "bot-training"), ("fleet_training.yaml", "fleet-training")):
        assert next(yaml.safe_load_all((build / name).read_text()))["pipelineInfo"]["name"] == pipeline
        assert f"loaded back with kfp: {build / name} (pipeline {pipeline}" in result.stdout
    assert result.stdout.index("== 1/2 tests") < result.stdout.index("== 2/2 compile")


def test_the_example_ci_workflow_tests_builds_every_image_folder_compiles_and_publishes():
    workflow = yaml.safe_load((REPO / "containers" / "ci" / "github-actions.yml").read_text())
    steps = {job: " ".join(str(step.get("run", "")) for step in spec["steps"]) for job, spec in workflow["jobs"].items()}
    assert ".ci/run" in steps["test"]
    assert "containers/*/Dockerfile" in steps["images"] and "docker push" in steps["images"]
    assert workflow["jobs"]["images"]["needs"] == "test" and workflow["jobs"]["publish"]["needs"] == "images"
    assert "botyard compile --output-dir build/pipelines --check" in steps["publish"]
    publish_cmd = steps["publish"][steps["publish"].index("botyard publish"):]
    for flag in ("--host", "--namespace", "--version", "--pipelines-dir build/pipelines"):
        assert flag in publish_cmd
    # the command line it runs is one botyard parses
    from botyard.pipelines.cli import build_parser

    args = build_parser().parse_args(["publish", "--host", "https://kfp", "--namespace", "ns", "--version", "v1",
                                      "--pipelines-dir", "build/pipelines"])
    assert (args.host, args.namespace, args.version) == ("https://kfp", "ns", "v1")
