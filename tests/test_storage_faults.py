"""Nothing lost: a failure or a crash at any point of publishing or promoting a version leaves no
partial version visible, on a local folder and on S3 (moto).

Every storage call the store makes while publishing (uploads, server-side copies, the
arrival checks, the rename, the marker write, the staging clean-up) is a fault point. Two
kinds of fault at each:

* ``error``: the call raises ``OSError`` (a network or disk failure); the store may clean up.
* ``crash``: the call and every later one never happen (the process died): no clean-up.

Plus real crashes: a subprocess that kills itself with SIGKILL at a chosen point, including
inside the local atomic write between writing the temporary file and ``os.replace``.

The invariant after every fault: every listed version is complete (each file matches the
manifest's size and SHA-256), the set of versions is the old one or the old one plus the new,
complete one, and ``latest`` / ``current`` (what the predictor serves and the gate compares
with) name only complete versions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.errors import ModelStoreError
from botyard.components.base.model_store import ModelStore

WRITE_CALLS = ("put_file", "copy_file", "file_sizes", "write_bytes", "rename_dir", "remove_tree")


class Crash(BaseException):
    """The process died here: not an ``Exception``, so no handler of the store's runs on it."""


def _meta():
    return {c.DATA_HASH: "ef" * 32, c.LABELS: ["a", "b"], c.OOS_THRESHOLD: 0.5, c.HYPERPARAMETERS: {"lr": 0.1}, c.METRICS: {"accuracy": 0.9}}


@pytest.fixture
def sources(tmp_path):
    """A small SavedModel-shaped folder and an evaluation folder."""
    sm = tmp_path / "src" / "saved_model"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(os.urandom(3000))
    (sm / "fingerprint.pb").write_bytes(b"fp")
    (sm / "variables" / "variables.index").write_bytes(b"idx")
    (sm / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(5000))
    ev = tmp_path / "src" / "evaluation"
    ev.mkdir()
    (ev / c.EVALUATION_FILE).write_text('{"accuracy": 0.9}')
    return str(sm), str(ev)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    return str(tmp_path / "models") if request.param == "local" else f"s3://{request.getfixturevalue('s3')}/models"


def assert_complete(store: ModelStore, bot_id: str, version: str) -> None:
    """Every file of the version's manifest is there with its size and SHA-256."""
    manifest = json.loads(storage.read_bytes(storage.join(store.version_dir(bot_id, version), c.PUBLISHED_MARKER)))
    local = store.local_version(bot_id, version)  # for S3: downloaded and checked against the manifest
    for rel, info in manifest[c.MANIFEST_FILES].items():
        path = os.path.join(local, *rel.split("/"))
        assert os.path.getsize(path) == info["size"] and storage.sha256_file(path) == info["sha256"], rel
    assert set(manifest[c.MANIFEST_FILES]) >= {c.METADATA_FILE, "saved_model/saved_model.pb", f"evaluation/{c.EVALUATION_FILE}"}


def assert_nothing_partial(root: str, before: list[str], current: str | None) -> list[str]:
    """The invariant, seen by a fresh reader (a predictor or a gate starting now); returns the versions."""
    store = ModelStore(root)
    versions = store.versions("bot-a")
    assert versions[: len(before)] == before and len(versions) <= len(before) + 1, versions
    for version in versions:
        assert_complete(store, "bot-a", version)
    assert store.latest("bot-a") == versions[-1] and store.current("bot-a") == current
    assert store.bots() == ["bot-a"]
    # whatever else is in the bot's folder (leftovers of the failed upload) is not a version
    leftovers = [n for n in storage.listdir(store.bot_dir("bot-a")) if n not in versions and n not in (c.CURRENT_POINTER, c.STAGING_DIR)]
    for name in leftovers:
        with pytest.raises(ModelStoreError, match="is not published"):
            store.local_version("bot-a", name)
    return versions


def _trace(action) -> list[tuple[str, str]]:
    """The sequence of the store's storage calls while ``action()`` runs."""
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        for name in WRITE_CALLS:
            real = getattr(storage, name)

            def recorder(*args, _real=real, _name=name, **kwargs):
                calls.append((_name, args[0]))
                return _real(*args, **kwargs)

            mp.setattr(storage, name, recorder)
        action()
    return calls


@contextlib.contextmanager
def _fault(at: int, kind: str):
    """Make the ``at``-th storage call (0-based) fail: ``error`` raises OSError once; ``crash``
    raises ``Crash`` there and at every later call (nothing runs after a crash)."""
    state = {"n": 0, "dead": False}
    with pytest.MonkeyPatch.context() as mp:
        for name in WRITE_CALLS:
            real = getattr(storage, name)

            def faulty(*args, _real=real, _name=name, **kwargs):
                if state["dead"]:
                    raise Crash(f"{_name} after the crash")
                n = state["n"]
                state["n"] += 1
                if n == at:
                    if kind == "crash":
                        state["dead"] = True
                        raise Crash(f"crash before {_name}({args[0]})")
                    raise OSError(f"injected failure of {_name}({args[0]})")
                return _real(*args, **kwargs)

            mp.setattr(storage, name, faulty)
        yield


@pytest.mark.parametrize("kind", ["error", "crash"])
def test_a_fault_at_any_point_of_register_leaves_nothing_partial(root, sources, kind):
    saved_model, evaluation = sources
    store = ModelStore(root)
    v1 = store.register("bot-a", saved_model, _meta(), evaluation)
    calls = _trace(lambda: ModelStore(root).register("bot-a", saved_model, _meta(), evaluation))
    published_at = next(i for i, (name, uri) in enumerate(calls) if name == "write_bytes" and uri.endswith(c.PUBLISHED_MARKER))
    expected = {"local": {"rename_dir", "write_bytes", "put_file"}, "s3": {"put_file", "copy_file", "file_sizes", "write_bytes", "remove_tree"}}
    assert {name for name, _ in calls} >= expected["s3" if storage.is_remote(root) else "local"]
    before = [v1] + [v for v in ModelStore(root).versions("bot-a") if v != v1]  # the traced run's version
    results = []
    for at in range(len(calls) + 1):
        try:
            with _fault(at, kind):
                ModelStore(root).register("bot-a", saved_model, _meta(), evaluation)
            outcome = "published"
        except (Crash, OSError) as exc:
            outcome = type(exc).__name__
        versions = assert_nothing_partial(root, before, None)
        grew = len(versions) > len(before)
        # before the marker is written nothing new is visible; after it, the new version is whole
        point = calls[at] if at < len(calls) else "after the last call"
        assert grew == (at > published_at), (at, point, outcome)
        assert outcome == "published" or at <= published_at or kind == "crash", (at, point, outcome)
        results.append((point, outcome))
        before = versions
    assert results[-1][1] == "published" and [o for _, o in results[: published_at + 1]] == [
        "Crash" if kind == "crash" else "OSError"
    ] * (published_at + 1)


def test_a_fault_while_promoting_leaves_the_old_pointer(root, sources):
    saved_model, evaluation = sources
    store = ModelStore(root)
    v1 = store.register("bot-a", saved_model, _meta(), evaluation)
    v2 = store.register("bot-a", saved_model, _meta(), evaluation)
    store.promote("bot-a", v1)
    for kind in ("error", "crash"):
        with pytest.raises((OSError, Crash)), _fault(0, kind):
            ModelStore(root).promote("bot-a", v2)
        assert ModelStore(root).current("bot-a") == v1
    assert ModelStore(root).promote("bot-a", v2) == v1 and ModelStore(root).current("bot-a") == v2


def test_a_fault_while_recording_the_verdict_means_no_blessing_and_no_deploy(root, sources, tmp_path):
    """The gate records its verdict in the store before writing its artifacts: a crash there
    leaves neither, so the deploy step (which reads the blessing artifact) cannot run."""
    from botyard.components.base.table import make_table, write_table
    from botyard.components.gate.core import GateConfig, gate

    from conftest import tiny_rows

    saved_model, evaluation = sources
    version = ModelStore(root).register("bot-a", saved_model, _meta(), evaluation)
    evaluation_dir = tmp_path / "evaluation"
    evaluation_dir.mkdir()
    (evaluation_dir / c.EVALUATION_FILE).write_text(json.dumps({c.METRICS: {"accuracy": 0.9, "macro_f1": 0.9}}))
    test = str(tmp_path / "test.jsonl")
    write_table(make_table(tiny_rows(intents=("greet", "bye"), per_intent=2)), test)
    blessing_dir = tmp_path / "blessing"
    blessing_dir.mkdir()
    with pytest.raises(Crash), _fault(0, "crash"):
        gate(root, "bot-a", version, str(evaluation_dir), test, GateConfig(), str(blessing_dir), str(tmp_path / "report.md"))
    assert os.listdir(blessing_dir) == [] and ModelStore(root).verdict("bot-a", version) is None


# --- real crashes: a subprocess killed with SIGKILL ---------------------------------------------
_KILLED_CHILD = r"""
import os, signal, sys
from botyard.components.base import storage
from botyard.components.base.model_store import ModelStore

root, saved_model, evaluation, action, at = sys.argv[1:6]
at, count = int(at), [0]

def die_at(name):
    real = getattr(storage, name)
    def wrapper(*args, **kwargs):
        if count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        count[0] += 1
        return real(*args, **kwargs)
    setattr(storage, name, wrapper)

if action == "replace":  # inside the local atomic write: temporary file written, not yet renamed
    real_replace = os.replace
    def replace(src, dst):
        if os.path.basename(dst) in ("PUBLISHED", "CURRENT"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = replace
else:
    for name in ("put_file", "copy_file", "file_sizes", "write_bytes", "rename_dir", "remove_tree"):
        die_at(name)
store = ModelStore(root)
meta = {"data_hash": "ef" * 32, "labels": ["a", "b"], "oos_threshold": 0.5, "hyperparameters": {}, "metrics": {}}
if sys.argv[6] == "promote":
    store.promote("bot-a", store.versions("bot-a")[-1])
else:
    store.register("bot-a", saved_model, meta, evaluation)
print("finished")
"""


def _killed_child(root, sources, action: str, at: int, what: str = "register") -> subprocess.CompletedProcess:
    # a killed child cannot remove its scratch folder: keep it under the test's own tmp_path
    scratch = os.path.join(os.path.dirname(os.path.dirname(sources[0])), "child-tmp")
    os.makedirs(scratch, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, root, *sources, action, str(at), what],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": scratch},
    )  # fmt: skip


def test_sigkill_at_every_point_of_a_local_register(sources, tmp_path):
    root = str(tmp_path / "models")
    store = ModelStore(root)
    v1 = store.register("bot-a", sources[0], _meta(), sources[1])
    store.promote("bot-a", v1)
    points = len(_trace(lambda: ModelStore(root).register("bot-a", sources[0], _meta(), sources[1])))
    before = ModelStore(root).versions("bot-a")
    killed = 0
    for at in range(points + 1):
        child = _killed_child(root, sources, "call", at)
        if at < points:
            assert child.returncode == -signal.SIGKILL, (at, child.stdout, child.stderr)
            killed += 1
        else:
            assert child.returncode == 0 and child.stdout == "finished\n", child.stderr
        versions = assert_nothing_partial(root, before, v1)
        assert len(versions) == len(before) + (at == points)
        before = versions
    assert killed == points >= 7  # manifest, 6 files, rename, marker
    # killed inside the marker's atomic write: the temporary file is there, the marker is not
    child = _killed_child(root, sources, "replace", 0)
    assert child.returncode == -signal.SIGKILL
    assert assert_nothing_partial(root, before, v1) == before
    # killed inside the CURRENT pointer's atomic write: the old pointer stays
    child = _killed_child(root, sources, "replace", 0, "promote")
    assert child.returncode == -signal.SIGKILL and ModelStore(root).current("bot-a") == v1
    assert ModelStore(root).promote("bot-a", before[-1]) == v1


def test_sigkill_during_an_s3_upload(s3, sources):
    """Killed while uploading to staging, while copying into place, just before the marker."""
    root = f"s3://{s3}/models"
    v1 = ModelStore(root).register("bot-a", sources[0], _meta(), sources[1])
    calls = _trace(lambda: ModelStore(root).register("bot-a", sources[0], _meta(), sources[1]))
    before = ModelStore(root).versions("bot-a")
    first_put = next(i for i, (name, _) in enumerate(calls) if name == "put_file")
    second_copy = [i for i, (name, _) in enumerate(calls) if name == "copy_file"][1]
    marker = next(i for i, (name, uri) in enumerate(calls) if name == "write_bytes" and uri.endswith(c.PUBLISHED_MARKER))
    for at in (first_put + 2, second_copy, marker):
        child = _killed_child(root, sources, "call", at)
        assert child.returncode == -signal.SIGKILL, (at, child.stderr)
        assert assert_nothing_partial(root, before, None) == before
    leftovers = storage.file_sizes(storage.join(root, "bot-a", c.STAGING_DIR))
    assert leftovers  # what the killed uploads left: invisible, and safe to delete
    assert ModelStore(root).versions("bot-a") == before and v1 in before
