"""Configuration as small frozen dataclasses, checked on construction.

Defaults are the tuned ones: a user who runs the pipeline on their own bot gets them
without extra flags. An out-of-range value raises ``ConfigError`` naming the field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from botyard.components.base.errors import ConfigError


def _check_range(obj: Any, name: str, low: float, high: float) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{type(obj).__name__}.{name} = {value!r} is not a number; allowed: {low} to {high}")
    if not low <= value <= high:
        raise ConfigError(f"{type(obj).__name__}.{name} = {value!r} is out of range; allowed: {low} to {high}")


def unknown_names(unknown: list[str], known) -> str:
    """``'epoch' (did you mean 'epochs'?); known: [...]``: the unknown names, each with its
    closest known name when one is close (a typo), then every known name."""
    known = sorted(known)
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        named.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    return f"{', '.join(named)}; known: {known}"


def cli_flags(config: type, renamed: dict[str, str] | None = None) -> dict[str, str]:
    """``{field: flag}`` for a config whose fields are command-line flags: the field's name with
    dashes (``max_batch`` -> ``--max-batch``), or the flag named in ``renamed`` (field -> flag name)."""
    renamed = renamed or {}
    return {f.name: "--" + renamed.get(f.name, f.name).replace("_", "-") for f in dataclasses.fields(config)}


@contextlib.contextmanager
def naming_flags(config: type, flags: dict[str, str]):
    """Rewrite a ``ConfigError`` of ``config`` raised inside the block so that it names the
    command-line flag a user typed (``--port 99999 is out of range``) instead of the dataclass
    field behind it (``ServeConfig.http_port = 99999``). ``flags`` maps field names to flags; a
    flag ending in ``=`` is joined to the value (``--param epochs=0 is out of range``)."""
    owner = config.__name__
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        for name, flag in flags.items():
            joined = flag if flag.endswith("=") else f"{flag} "
            message = message.replace(f"{owner}.{name} = ", joined).replace(f"{owner}.{name}", flag.rstrip("="))
        if message == str(exc):
            raise
        raise ConfigError(message) from None


class ConfigBase:
    """Shared helpers: range checks declared as ``_ranges`` and dict round-trips."""

    _ranges: dict[str, tuple[float, float]] = {}
    parameter_prefix = ""  # pipeline parameters are named ``<prefix><field>`` (one namespace per config)

    def __post_init__(self) -> None:
        for name, (low, high) in self._ranges.items():
            _check_range(self, name, low, high)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown_names(unknown, known)}")
        return cls(**values)

    @classmethod
    def from_parameters(cls, values: dict[str, Any]):
        """From pipeline parameters: missing fields keep their defaults, values are coerced to the
        fields' types (KFP hands a dict of pipeline parameters over as strings: ``"3.0"``, ``"true"``)."""
        prefix = cls.parameter_prefix
        values = {name[len(prefix):] if prefix and name.startswith(prefix) else name: value for name, value in values.items()}
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(kinds))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown_names(unknown, kinds)}")
        return cls(**{name: _coerce(cls.__name__, name, kinds[name], value) for name, value in values.items()})

    @classmethod
    def parameter_fields(cls) -> list[tuple[str, type, Any]]:
        """``(name, type, default)`` of every field a pipeline exposes as a parameter, in declaration order."""
        return [
            (cls.parameter_prefix + f.name, _PARAMETER_TYPES[f.type], f.default)
            for f in dataclasses.fields(cls) if f.type in _PARAMETER_TYPES
        ]


_PARAMETER_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _coerce(owner: str, name: str, kind: str, value: Any) -> Any:
    """``value`` as the field type ``kind`` (an annotation string, as ``from __future__ import annotations`` leaves it)."""
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.strip().lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return value.strip().lower() in ("true", "1")
            return bool(value)
        if kind == "int":
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}.{name} = {value!r} is not a valid {kind}") from None
    return value


LABEL_CONFLICT_POLICIES = ("fail", "warn", "drop")


@dataclass(frozen=True)
class ValidationConfig(ConfigBase):
    min_examples_per_intent: int = 5  # fewer fails the run (Rasa's rule of thumb)
    min_intents: int = 2  # a classifier needs at least two classes
    imbalance_warn_ratio: float = 10.0  # largest/smallest intent above this warns
    min_examples_per_entity: int = 3  # an entity type with fewer annotated examples warns (too few to learn)
    # one utterance labelled with different intents: "fail" the run, "warn" and keep every row,
    # or "drop" its train/val rows (test rows stay as given); real data sets have a few (CLINC150: 4)
    on_label_conflict: str = "fail"

    _ranges = {"min_examples_per_intent": (1, 10_000), "min_intents": (2, 100_000), "imbalance_warn_ratio": (1.0, 1e9),
               "min_examples_per_entity": (1, 10_000)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.on_label_conflict not in LABEL_CONFLICT_POLICIES:
            raise ConfigError(
                f"ValidationConfig.on_label_conflict = {self.on_label_conflict!r} is not allowed; "
                f"use one of {', '.join(LABEL_CONFLICT_POLICIES)}"
            )

    # the pipeline parameters that are validation settings (the rest keep their defaults)
    RUN_PARAMETERS = ("min_examples_per_intent", "min_examples_per_entity", "on_label_conflict")

    @classmethod
    def from_run_parameters(cls, parameters: dict | None) -> "ValidationConfig":
        """From a run's pipeline parameters (``botyard run --param``, submit, fleet): picks the
        validation settings among them, coerced to the fields' types; others are ignored."""
        picked = {k: v for k, v in (parameters or {}).items() if k in cls.RUN_PARAMETERS}
        return cls.from_parameters(picked)


@dataclass(frozen=True)
class SplitConfig(ConfigBase):
    val_fraction: float = 0.1  # share of each intent held out to pick epochs and the OOS threshold
    test_fraction: float = 0.1  # share of each intent held out for evaluation and the gate
    seed: int = 13  # fixed: the same data always splits the same way

    _ranges = {"val_fraction": (0.0, 0.5), "test_fraction": (0.0, 0.5), "seed": (0, 2**31 - 1)}


@dataclass(frozen=True)
class ThresholdConfig(ConfigBase):
    """How the evaluate step chooses a model version's out-of-scope threshold on validation data
    (the rule: ``base.decision``). Each field is a pipeline parameter and ``--param`` key: a bot's
    owner sets how much in-scope accuracy to give up for rejecting what the bot was not built for."""

    # with out-of-scope (``oos``) validation examples: reject at least this share of them, and
    # within that, answer as many in-scope utterances right as possible
    min_oos_recall: float = 0.7
    # without: reject at most this share of the correctly classified validation utterances
    reject_budget: float = 0.02

    _ranges = {"min_oos_recall": (0.0, 1.0), "reject_budget": (0.0, 0.5)}


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Every hyperparameter of the featurize and train steps (each is a pipeline parameter too).

    The schedule fits the data's size (``botyard.components.train.core.plan_schedule``): the
    batch shrinks for small bots, and a bot trains for as many epochs as it takes to reach
    ``min_steps`` optimizer steps (and ``min_steps_per_intent`` for each intent: a bot of 150
    intents needs more steps than one of 15), between ``min_epochs`` and ``epochs``; early stopping on the
    validation loss ends it sooner, after ``patience`` epochs and at least ``patience_steps``
    steps without improvement.
    """

    embedding_dim: int = 64  # word embedding size (the vectors' size when word_vectors_uri is given)
    lstm_units: int = 64  # per direction of the BiLSTM
    dropout: float = 0.5  # on embeddings and on each head's hidden layer
    feature_dropout: float = 0.2  # share of an utterance's n-grams dropped at random while training
    epochs: int = 100  # upper bound on epochs (small bots take many short ones)
    min_epochs: int = 3  # lower bound on epochs (early stopping may still end sooner)
    min_steps: int = 600  # small bots train for more epochs until they have taken this many steps
    min_steps_per_intent: int = 8  # ... and at least this many per intent (150 intents: 1,200 steps)
    batch_size: int = 128  # upper bound: small bots get smaller batches (train.core.MIN_STEPS_PER_EPOCH)
    learning_rate: float = 2e-3  # Adam (lazy: sparse rows are updated only where a batch touches them)
    max_tokens: int = 20_000  # word vocabulary size, incl. padding and OOV
    sequence_length: int = 32  # tokens per utterance for the LSTM; longer ones are truncated
    max_ngrams: int = 10_000  # word uni+bigram TF-IDF features; 0 turns them off
    max_char_ngrams: int = 20_000  # character 2-5-gram (within words) TF-IDF features; 0 turns them off
    ngram_units: int = 256  # hidden units over the n-gram views
    patience: int = 2  # epochs without val-loss improvement before stopping ...
    patience_steps: int = 200  # ... and at least this many optimizer steps
    label_smoothing: float = 0.1  # softens targets; spreads confidences, which helps the out-of-scope threshold
    mixed_precision: bool = False  # float16 compute on a GPU; off by default (CPU gains nothing)
    seed: int = 13
    # fastText / GloVe text file (optionally .gz), read like training data (path, gs://, s3://):
    # initialises the word embedding; empty (the default) = trained from scratch, nothing downloaded
    word_vectors_uri: str = ""

    _ranges = {
        "embedding_dim": (4, 4096),
        "lstm_units": (4, 4096),
        "dropout": (0.0, 0.9),
        "feature_dropout": (0.0, 0.9),
        "epochs": (1, 1000),
        "min_epochs": (1, 1000),
        "min_steps": (0, 10_000_000),
        "min_steps_per_intent": (0, 100_000),
        "batch_size": (1, 65536),
        "learning_rate": (1e-6, 1.0),
        "max_tokens": (16, 10_000_000),
        "sequence_length": (2, 4096),
        "max_ngrams": (0, 10_000_000),
        "max_char_ngrams": (0, 10_000_000),
        "ngram_units": (4, 65536),
        "patience": (1, 1000),
        "patience_steps": (0, 10_000_000),
        "label_smoothing": (0.0, 0.5),
        "seed": (0, 2**31 - 1),
    }


@dataclass(frozen=True)
class GpuConfig(ConfigBase):
    """Where the train step runs on a cluster; compiled into the pipeline YAML."""

    enabled: bool = True  # False: compile for a CPU-only cluster (no GPU request, selector or toleration)
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_limit: int = 1
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: tuple[dict[str, str], ...] = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)

    _ranges = {"accelerator_limit": (1, 16)}


@dataclass(frozen=True)
class EntityConfig(ConfigBase):
    """The entity tagger's hyperparameters (trained only when the bot's data has entity spans).

    Pipeline parameters and ``--param`` keys carry the prefix ``entity_`` (``entity_epochs``).
    """

    parameter_prefix = "entity_"

    embedding_dim: int = 100  # word embedding size
    char_embedding_dim: int = 24  # character embedding size of the per-token CNN
    char_filters: int = 64  # CNN filters: the token's spelling/shape features
    max_chars_per_token: int = 20  # longer tokens are cut (their start still says enough)
    lstm_units: int = 128  # per direction of the word-level BiLSTM
    dropout: float = 0.5
    word_dropout: float = 0.2  # share of training words seen as unknown: teaches tagging unseen values
    # the utterance's intent (one-hot in training, the intent model's probabilities when serving),
    # projected to this size and given to every token: which values an intent takes. 0: off
    intent_dim: int = 32
    intent_dropout: float = 0.3  # share of training rows whose intent is replaced by "unsure" (uniform)
    # each token's context features (the word, its affixes, the words around it and their pairs)
    # seen at least this often in training are scored linearly beside the BiLSTM, as a CRF over
    # hand-made features would score them (a wide-and-deep tagger). 0: off
    feature_min_count: int = 2
    feature_dropout: float = 0.2  # share of training features dropped: the BiLSTM still learns
    # pretrained English word vectors (GloVe 6B, 50 dimensions, frozen; ``base.word_vectors``) for
    # this many of the most frequent English words and for every training word GloVe knows, given
    # to the BiLSTM beside its own embeddings: an unseen value still means something. 0: off
    word_vectors: int = 200_000
    # extra copies of each training row with spans, every value swapped for another value of its
    # entity type seen in training (more contexts for every value; ``train.augment``). 0: off
    swapped_copies: int = 1
    epochs: int = 40  # upper bound; early stopping on validation loss ends sooner
    batch_size: int = 32  # upper bound: small bots get smaller batches
    learning_rate: float = 3e-3  # Adam
    patience: int = 4  # epochs without val-loss improvement before stopping
    min_steps: int = 600  # early stopping may end training only after this many optimizer steps (small bots)
    max_tokens: int = 20_000  # token vocabulary, incl. padding and OOV
    seed: int = 13

    _ranges = {
        "word_dropout": (0.0, 0.9),
        "intent_dim": (0, 4096),
        "intent_dropout": (0.0, 1.0),
        "feature_min_count": (0, 1_000_000),
        "feature_dropout": (0.0, 0.9),
        "word_vectors": (0, 400_000),
        "swapped_copies": (0, 100),
        "embedding_dim": (4, 4096),
        "char_embedding_dim": (2, 1024),
        "char_filters": (4, 4096),
        "max_chars_per_token": (1, 256),
        "lstm_units": (4, 4096),
        "dropout": (0.0, 0.9),
        "epochs": (1, 1000),
        "batch_size": (1, 65536),
        "learning_rate": (1e-6, 1.0),
        "patience": (1, 1000),
        "min_steps": (0, 10_000_000),
        "max_tokens": (16, 10_000_000),
        "seed": (0, 2**31 - 1),
    }
