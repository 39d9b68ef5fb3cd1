"""Storage primitives on a local folder and on a real S3-compatible server (moto on 127.0.0.1)."""

from __future__ import annotations

import os

import pytest

from botyard.components.base import storage
from botyard.components.base.errors import DataValidationError, StorageError


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A folder URI on each kind of storage: a local path, or a prefix in a fresh S3 bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    bucket = request.getfixturevalue("s3")
    return f"s3://{bucket}/store"


def test_write_read_list_and_remove(root):
    target = storage.join(root, "a", "b.txt")
    assert not storage.exists(target)
    storage.write_text(target, "hello\n")
    storage.write_bytes(storage.join(root, "a", "c", "d.bin"), b"\x00\x01")
    assert storage.exists(target) and storage.read_text(target) == "hello\n"
    with storage.open_uri(target) as f:
        assert f.read() == "hello\n"
    assert storage.listdir(root) == ["a"]
    assert storage.listdir(storage.join(root, "a")) == ["b.txt", "c"]
    assert storage.file_sizes(root) == {"a/b.txt": 6, "a/c/d.bin": 2}
    storage.write_text(target, "replaced")  # one atomic write replaces the whole file
    assert storage.read_text(target) == "replaced"
    storage.remove_tree(storage.join(root, "a", "c"))
    assert storage.file_sizes(root) == {"a/b.txt": 8}
    storage.remove_tree(storage.join(root, "nothing-here"))  # a missing folder is not an error
    with pytest.raises(FileNotFoundError):
        storage.listdir(storage.join(root, "nothing-here"))
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "a", "missing.txt"))


def test_open_for_writing_shows_the_file_once_closed(root):
    target = storage.join(root, "w.txt")
    with storage.open_uri(target, "w") as f:
        f.write("naïve")
    assert storage.read_bytes(target) == "naïve".encode("utf-8")


def test_put_get_copy_and_copytree_between_local_and_remote(root, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "one.txt").write_text("1")
    (src / "sub" / "two.txt").write_text("22")
    storage.copytree(str(src), storage.join(root, "tree"))
    assert storage.file_sizes(storage.join(root, "tree")) == {"one.txt": 1, "sub/two.txt": 2}
    storage.copy_file(storage.join(root, "tree", "one.txt"), storage.join(root, "copy", "one.txt"))  # server-side on S3
    assert storage.read_text(storage.join(root, "copy", "one.txt")) == "1"
    storage.get_file(storage.join(root, "tree", "sub", "two.txt"), str(tmp_path / "down" / "two.txt"))
    assert (tmp_path / "down" / "two.txt").read_text() == "22"
    storage.copytree(storage.join(root, "tree"), str(tmp_path / "back"))
    assert sorted(storage.file_sizes(str(tmp_path / "back"))) == ["one.txt", "sub/two.txt"]


def test_local_write_leaves_no_temporary_file(tmp_path):
    storage.write_text(str(tmp_path / "CURRENT"), "v1\n")
    storage.write_text(str(tmp_path / "CURRENT"), "v2\n")
    assert os.listdir(tmp_path) == ["CURRENT"] and (tmp_path / "CURRENT").read_text() == "v2\n"


def test_uri_kinds():
    assert [storage.scheme(u) for u in ("s3://b/k", "gs://b/k", "/data/x.csv", "file:///data/x.csv", "rel/x.csv")] == [
        "s3", "gs", None, None, None,
    ]
    assert storage.join("s3://b/models/", "bot", "v") == "s3://b/models/bot/v"
    assert storage.absolute("s3://b/models") == "s3://b/models"
    assert storage.absolute("file:///tmp/models") == "/tmp/models"
    with pytest.raises(StorageError, match=r"^hdfs://nn/data\.csv: storage scheme 'hdfs://' is not supported; use s3://, gs:// or a local path$"):
        storage.exists("hdfs://nn/data.csv")


def test_gs_uris_go_through_gcsfs():
    """No GCS server runs here: this checks gs:// reaches gcsfs (installed, registered with fsspec)."""
    import fsspec
    import gcsfs

    assert fsspec.get_filesystem_class(storage.SCHEMES["gs"]) is gcsfs.GCSFileSystem


def test_endpoint_from_the_s3_specific_variable(s3, s3_server, monkeypatch):
    """``AWS_ENDPOINT_URL_S3`` alone reaches the server (botocore reads it; no code change)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    storage.write_text(f"s3://{s3}/x.txt", "via AWS_ENDPOINT_URL_S3")
    assert storage.read_text(f"s3://{s3}/x.txt") == "via AWS_ENDPOINT_URL_S3"


def test_missing_credentials_are_a_storage_error_naming_the_uri(s3, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    uri = f"s3://{s3}/nlu.yml"
    with pytest.raises(StorageError) as caught:
        storage.read_bytes(uri)
    assert str(caught.value).startswith(f"{uri}: NoCredentialsError: Unable to locate credentials; check AWS_ACCESS_KEY_ID")
    assert isinstance(caught.value, OSError) and caught.value.uri == uri


def test_unreachable_endpoint_is_a_storage_error(s3, monkeypatch):
    from botyard.components.base.net import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port('127.0.0.1')}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(OSError, match=rf"s3://{s3}/x"):
        storage.read_bytes(f"s3://{s3}/x")


def test_training_data_is_read_from_s3(s3, tmp_path):
    from botyard.components.base.config import ValidationConfig
    from botyard.components.base.training_data import load_training_data
    from conftest import SAMPLE_BOT

    uri = f"s3://{s3}/x/nlu.yml"
    storage.put_file(str(SAMPLE_BOT / "nlu.yml"), uri)
    remote = load_training_data(uri, ValidationConfig())
    local = load_training_data(str(SAMPLE_BOT / "nlu.yml"), ValidationConfig())
    assert remote.data_hash == local.data_hash and len(remote.table) == len(local.table) > 0
    with pytest.raises(DataValidationError, match=rf"^s3://{s3}/x/missing\.yml: cannot read the file \(FileNotFoundError"):
        load_training_data(f"s3://{s3}/x/missing.yml", ValidationConfig())


def test_run_refuses_an_unusable_models_root_before_any_step(tmp_path):
    from botyard.pipelines.local_run import run_bot_training_locally

    with pytest.raises(StorageError, match=r"^hdfs://nn/models: storage scheme 'hdfs://' is not supported"):
        run_bot_training_locally(models_root="hdfs://nn/models", pipeline_root=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()
