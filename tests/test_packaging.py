"""One import namespace: the wheel holds only ``botyard`` (plus its dist-info), every source package is in it,
and the installed package imports from outside the checkout without any top-level ``components``/``pipelines``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib


DATA_PACKAGES = {"botyard.pipelines.sample_bot"}  # folders of data files only, listed so setuptools ships them


def _source_packages() -> set[str]:
    found = set()
    for folder in ("components", "pipelines"):
        for init in (REPO / folder).rglob("__init__.py"):
            found.add(".".join(["botyard", *init.parent.relative_to(REPO).parts]))
    return found


def test_pyproject_lists_every_source_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _source_packages() | DATA_PACKAGES, "update [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"] == {"botyard.components": "components", "botyard.pipelines": "pipelines"}


@pytest.mark.slow
def test_the_wheel_has_only_botyard_at_the_top(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("botyard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"botyard", next(t for t in top if t.endswith(".dist-info"))}
    packages = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == _source_packages()
    assert "botyard/pipelines/sample_bot/nlu.yml" in names


def test_it_imports_from_outside_the_checkout(tmp_path):
    code = ("import botyard.components, botyard.pipelines, botyard.components.base.contracts, botyard.pipelines.bench.kfp_stub\n"
            "try:\n    import components\nexcept ImportError:\n    print('no components')\n"
            "try:\n    import pipelines\nexcept ImportError:\n    print('no pipelines')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.stdout.split("\n")[:2] == ["no components", "no pipelines"]
