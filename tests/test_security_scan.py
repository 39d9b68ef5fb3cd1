"""checkov over manifests/ and containers/: no failed check except the ones skipped, with reasons, in .checkov.yaml.

checkov lives in its own environment (``make checkov`` creates ``.venv-checkov``): its
dependencies fight the project's pins (../shared/STACK.md). ``make test`` creates it first, so
CI runs these tests; without it they skip, naming the command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".checkov.yaml"
FRAMEWORKS = ("kubernetes", "kustomize", "dockerfile")


def checkov() -> str:
    found = REPO / ".venv-checkov" / "bin" / "checkov"
    if found.exists():
        return str(found)
    on_path = shutil.which("checkov")
    if on_path:
        return on_path
    pytest.skip("checkov is not installed: `make checkov` puts it in .venv-checkov (apart from the project's pins)")


def run_checkov(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([checkov(), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_every_skipped_check_has_a_written_reason():
    skips = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["skip-check"]
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^\s*-\s*(CKV\w+)\s*#\s*reason:\s*(.*)$", CONFIG.read_text(), re.M)}
    assert skips and sorted(skips) == sorted(lines), "every skip-check entry needs a '# reason:' comment on its line"
    assert all(len(reason.split()) >= 8 for reason in lines.values()), lines


def test_manifests_and_containers_pass_checkov():
    result = run_checkov("--config-file", str(CONFIG))
    summaries = re.findall(r"^(\w+) scan results:\s*\n\s*Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)",
                           result.stdout, re.M)
    assert {framework for framework, *_ in summaries} == set(FRAMEWORKS), result.stdout[-3000:]
    failed = [line for line in result.stdout.splitlines() if "FAILED for resource" in line or line.startswith("Check:")]
    assert (result.returncode, failed) == (0, []), result.stdout[-3000:]
    assert all(int(passed) > 0 and failed_count == "0" for _, passed, failed_count, _ in summaries)


def test_checkov_catches_a_privileged_root_container(tmp_path):
    """The same configuration fails a manifest that breaks what ours keep."""
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "bad.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "botyard"},
        "spec": {"containers": [{"name": "c", "image": "busybox:latest", "securityContext": {"privileged": True}}]},
    }))
    (tmp_path / "containers").mkdir()
    result = run_checkov("--config-file", str(CONFIG), cwd=tmp_path)
    assert result.returncode == 1
    for check in ("CKV_K8S_16", "CKV_K8S_14", "CKV_K8S_11", "CKV_K8S_13"):  # privileged, latest tag, no CPU/memory limits
        assert check in result.stdout, check
