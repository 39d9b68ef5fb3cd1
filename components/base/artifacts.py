"""The JSON files inside the steps' artifact folders: one reader and one writer for all of them.

File names are in ``contracts`` (``TRAINING_FILE``, ``EVALUATION_FILE``, ``BLESSING_FILE``,
``INFRA_CHECK_FILE``, ``DEPLOYMENT_FILE``). A step reads an upstream step's verdict from its
artifact, never from a side channel, so these are the steps' contracts with each other.
"""

from __future__ import annotations

import json
import os

from botyard.components.base import contracts as c


def write_json(folder: str, name: str, value: dict) -> str:
    """Write ``value`` as ``<folder>/<name>`` (creating the folder); returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
    return path


def read_json(folder: str, name: str) -> dict:
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def read_training_info(model_dir: str) -> dict:
    """The train step's ``training.json``: labels, hyperparameters, history, device."""
    return read_json(model_dir, c.TRAINING_FILE)


def read_evaluation(evaluation_dir: str) -> dict:
    """The evaluate step's ``evaluation.json``: labels, threshold, metrics, per-intent figures."""
    return read_json(evaluation_dir, c.EVALUATION_FILE)


def read_blessing(blessing_dir: str) -> dict:
    """The promotion gate's ``blessing.json``."""
    return read_json(blessing_dir, c.BLESSING_FILE)


def write_blessing(blessing_dir: str, verdict: dict) -> None:
    """``blessing.json`` plus the empty ``BLESSED`` / ``NOT_BLESSED`` marker file."""
    write_json(blessing_dir, c.BLESSING_FILE, verdict)
    open(os.path.join(blessing_dir, c.BLESSED_MARKER if verdict["blessed"] else c.NOT_BLESSED_MARKER), "w").close()


def read_infra_result(result_dir: str) -> dict:
    """The infra check's ``infra_check.json``."""
    return read_json(result_dir, c.INFRA_CHECK_FILE)
