"""Fleet training: the bot list, each bot's outcome, and the run's summary (no kfp here).

A fleet run trains many bots in one KFP run. Every bot ends in exactly one *outcome*, a
small JSON object (keys below), so that one bot's bad data never fails the others::

    data check        --ok-->  bot_training steps  -->  record_success  --+
          |                                                               +--> one outcome per bot
          +--not ok (DataValidationError / ConfigError: message kept)  ---+

The summary step then lists every bot of the fleet's list in order: succeeded (model version,
headline metrics) or failed (stage and message). A bot with no outcome at all (one of its
training steps crashed on the cluster) is listed as failed too, with a pointer to the run.
"""

from __future__ import annotations

import csv
import io
import json
import os

from botyard.components.base import contracts as c
from botyard.components.base import storage
from botyard.components.base.data_formats import json_type
from botyard.components.base.config import ValidationConfig, unknown_names
from botyard.components.base.errors import BotyardError, ConfigError
from botyard.components.base.model_store import check_bot_id

DEFAULT_PARALLELISM = 4  # bots trained at once in a fleet run; each holds one GPU while its train step runs

# --- the bot list ------------------------------------------------------------------------------
BOT_ID = "bot_id"
DATA_URI = "data_uri"
BOT_FIELDS = (BOT_ID, DATA_URI)

# --- an outcome --------------------------------------------------------------------------------
STATUS = "status"
STAGE = "stage"  # where a failed bot stopped: bot_id | ingest | validate | train
REASON = "reason"
DATA_HASH = "data_hash"
VERSION = "version"
VERSION_URI = "version_uri"
METRICS = "metrics"
OOS_THRESHOLD = "oos_threshold"
LIVE = "live"  # the bot's CURRENT pointer names the new version (the promotion gate blessed and deployed it)

READY = "ready"  # passed the data check; training follows
SUCCEEDED = "succeeded"
FAILED = "failed"

SUMMARY_FILE = "summary.json"  # inside the summary artifact folder
HEADLINE_METRICS = ("accuracy", "macro_f1", "test_size")  # copied from metadata.json into the outcome
NO_OUTCOME_REASON = "no outcome recorded: a training step of this bot failed; see its tasks in the run's logs"


def parse_bots(items, base_dir: str | None = None) -> list[dict]:
    """A checked bot list: each item ``{"bot_id", "data_uri"}``; ids valid and unique.

    Relative local data paths are resolved against ``base_dir`` (the bots file's folder).
    """
    if not isinstance(items, list):
        raise ConfigError(f"expected a list of bots, [{{\"bot_id\": ..., \"data_uri\": ...}}, ...]; got {json_type(items)}")
    if not items:
        raise ConfigError("the bot list is empty; give at least one {\"bot_id\": ..., \"data_uri\": ...}")
    bots, seen = [], set()
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ConfigError(f"bot #{i}: expected an object with {list(BOT_FIELDS)}, got {type(item).__name__}")
        unknown = sorted(set(item) - set(BOT_FIELDS))  # first: "data" for "data_uri" is a typo, not a missing field
        if unknown:
            raise ConfigError(f"bot #{i}: unknown field(s) {unknown_names(unknown, BOT_FIELDS)}")
        missing = [f for f in BOT_FIELDS if not str(item.get(f) or "").strip()]
        if missing:
            raise ConfigError(f"bot #{i}: missing {missing}; every bot needs {list(BOT_FIELDS)}")
        bot_id = check_bot_id(str(item[BOT_ID]).strip())
        if bot_id in seen:
            raise ConfigError(f"bot #{i}: bot id '{bot_id}' appears more than once; each bot may appear once per fleet run")
        seen.add(bot_id)
        data_uri = str(item[DATA_URI]).strip()
        if base_dir and not storage.is_remote(data_uri) and not os.path.isabs(storage.local_path(data_uri)):
            data_uri = os.path.normpath(os.path.join(base_dir, data_uri))
        bots.append({BOT_ID: bot_id, DATA_URI: data_uri})
    return bots


def read_bots_file(path: str) -> list[dict]:
    """The bot list from a ``.json`` file (a list, or ``{"bots": [...]}``) or a ``.csv`` with a
    ``bot_id,data_uri`` header; relative data paths are taken from the file's folder."""
    ext = os.path.splitext(path)[1].lower()
    try:
        with storage.open_uri(path) as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the bots file ({exc.strerror or exc})") from exc
    if ext == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
        if isinstance(doc, dict) and "bots" not in doc:
            raise ConfigError(f"{path}: expected a list of bots or {{\"bots\": [...]}}; the object's keys are {sorted(doc)[:10]}")
        items = doc.get("bots") if isinstance(doc, dict) else doc
    elif ext == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in reader.fieldnames or []]
        if not set(BOT_FIELDS) <= set(header):
            raise ConfigError(f"{path}: the CSV header must name {list(BOT_FIELDS)} (found {header})")
        items = [{k.strip(): (v or "").strip() for k, v in row.items() if k and k.strip() in BOT_FIELDS} for row in reader]
    else:
        raise ConfigError(f"{path}: unknown bots file type {ext or '(no extension)'!r}; use .json or .csv")
    base = None if storage.is_remote(path) else os.path.dirname(os.path.abspath(storage.local_path(path)))
    try:
        return parse_bots(items, base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def failed(bot_id: str, data_uri: str, stage: str, reason: str) -> dict:
    return {BOT_ID: bot_id, DATA_URI: data_uri, STATUS: FAILED, STAGE: stage, REASON: reason}


def check_bot_data(bot_id: str, data_uri: str, validation: ValidationConfig | None = None) -> dict:
    """The data check before a bot's training: read and validate its data in-process.

    Returns a ``ready`` outcome (with the data hash) or a ``failed`` one carrying the message
    of the ``BotyardError`` that stopped it; never raises for bad data or a bad bot id.
    """
    from botyard.components.base.training_data import READ_STAGE, load_training_data

    try:
        check_bot_id(bot_id)
    except BotyardError as exc:
        return failed(bot_id, data_uri, "bot_id", str(exc))
    try:
        data = load_training_data(data_uri, validation)
    except BotyardError as exc:
        return failed(bot_id, data_uri, getattr(exc, "stage", None) or READ_STAGE, str(exc))
    return {BOT_ID: bot_id, DATA_URI: data_uri, STATUS: READY, DATA_HASH: data.data_hash}


def record_success(outcome: dict, version_uri: str) -> dict:
    """The ``succeeded`` outcome of a bot that passed its data check: its new model version, headline metrics, and whether it went live."""
    with storage.open_uri(storage.join(version_uri, c.METADATA_FILE)) as f:
        meta = json.load(f)
    metrics = meta.get(c.METRICS, {})
    pointer = storage.join(version_uri.rstrip("/").rsplit("/", 1)[0], c.CURRENT_POINTER)
    live = False
    if storage.exists(pointer):
        with storage.open_uri(pointer) as f:
            live = f.read().strip() == meta[c.VERSION]
    return {
        **outcome,
        STATUS: SUCCEEDED,
        VERSION: meta[c.VERSION],
        VERSION_URI: version_uri,
        DATA_HASH: meta[c.DATA_HASH],
        METRICS: {k: metrics[k] for k in HEADLINE_METRICS if k in metrics},
        OOS_THRESHOLD: meta.get(c.OOS_THRESHOLD),
        LIVE: live,
    }


def summarise(bots: list[dict], outcomes: list) -> dict:
    """One entry per bot of ``bots`` (in order), from the outcomes that reached the summary.

    ``outcomes`` are dicts or their JSON strings; a missing or unreadable one counts as failed.
    """
    by_bot = {}
    for item in outcomes or []:
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except json.JSONDecodeError:
                continue
        if isinstance(item, dict) and item.get(BOT_ID):
            by_bot[item[BOT_ID]] = item
    entries = []
    for bot in bots:
        entry = by_bot.get(bot[BOT_ID])
        if not entry or entry.get(STATUS) not in (SUCCEEDED, FAILED):  # a checked bot whose training never reported
            entry = failed(bot[BOT_ID], bot.get(DATA_URI, ""), "train", NO_OUTCOME_REASON)
        entries.append(entry)
    n_ok = sum(e[STATUS] == SUCCEEDED for e in entries)
    return {"bots": len(entries), SUCCEEDED: n_ok, FAILED: len(entries) - n_ok, "outcomes": entries}


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def summary_markdown(summary: dict) -> str:
    """The summary as the Markdown table the KFP UI renders."""
    lines = [
        f"# Fleet training: {summary[SUCCEEDED]} of {summary['bots']} bots succeeded",
        "",
        "| bot | status | model version | live | accuracy | macro-F1 | reason |",
        "| --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    for o in summary["outcomes"]:
        m = o.get(METRICS) or {}
        acc = f"{m['accuracy']:.3f}" if "accuracy" in m else ""
        f1 = f"{m['macro_f1']:.3f}" if "macro_f1" in m else ""
        reason = f"{o.get(STAGE)}: {o.get(REASON)}" if o[STATUS] == FAILED else ""
        live = {True: "yes", False: "no"}.get(o.get(LIVE), "")
        lines.append(f"| {o[BOT_ID]} | {o[STATUS]} | {o.get(VERSION, '')} | {live} | {acc} | {f1} | {_cell(reason)} |")
    return "\n".join(lines) + "\n"
