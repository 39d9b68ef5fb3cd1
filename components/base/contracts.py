"""The contracts botyard's steps, predictor and outside tools share; nothing here is repeated as a literal elsewhere.

Model store layout (``models_root`` is a local or mounted folder, ``s3://bucket/prefix`` or
``gs://bucket/prefix``; see ``botyard.components.base.model_store`` for how a version is published)::

    <models_root>/<bot_id>/<version>/saved_model/      SavedModel, signature ``serving_default``
    <models_root>/<bot_id>/<version>/metadata.json     see ``METADATA_KEYS``
    <models_root>/<bot_id>/<version>/evaluation/       evaluation report files
    <models_root>/<bot_id>/<version>/PUBLISHED         written last: the manifest (every file, size, SHA-256)
    <models_root>/<bot_id>/verdicts/<version>.json     the promotion gate's verdict on that version
    <models_root>/<bot_id>/CURRENT                     the promoted (live) version id
    <models_root>/<bot_id>/.staging/                   uploads in progress (or left by a crash)

The ``serving_default`` signature takes ``tf.string [None]`` (raw utterances) and returns
``probabilities``: ``float32 [None, len(labels)]`` in ``metadata["labels"]`` order; a version
with an entity tagger (metadata ``entity_tags``) also returns its decoded tags per token and the
tokens' character offsets (``OUTPUT_ENTITY_TAGS`` and below).
"""

from __future__ import annotations

# --- canonical training table -------------------------------------------------------------
UTTERANCE = "utterance"
INTENT = "intent"
ENTITIES = "entities"  # list of {"start", "end", "value", "entity"}; end exclusive
SPLIT = "split"  # "train" | "val" | "test" | "" (not given)
SOURCE_ROW = "source_row"  # 1-based row / line in the source file, for error messages
CANONICAL_COLUMNS = (UTTERANCE, INTENT, ENTITIES, SPLIT, SOURCE_ROW)
SPLITS = ("train", "val", "test")
OOS_INTENT = "oos"  # examples a bot provides of what it must not answer

# --- Dataset artifact metadata -------------------------------------------------------------
META_DATA_HASH = "data_hash"
META_ROWS = "rows"
META_INTENTS = "intents"
META_SOURCE = "source"

# --- model store ---------------------------------------------------------------------------
SAVED_MODEL_DIR = "saved_model"
METADATA_FILE = "metadata.json"
EVALUATION_DIR = "evaluation"
CURRENT_POINTER = "CURRENT"
PUBLISHED_MARKER = "PUBLISHED"  # a version without it is incomplete: never listed, loaded or promoted
STAGING_DIR = ".staging"  # under a bot's folder: versions being uploaded
VERDICTS_DIR = "verdicts"  # under a bot's folder: <version>.json, the gate's verdict (versions stay immutable)
SERVING_SIGNATURE = "serving_default"
FEATURES_SIGNATURE = "features"  # the embedded featurizer: utterances -> its features
SIGNATURE_INPUT = "utterances"
OUTPUT_PROBABILITIES = "probabilities"
# only in a version with an entity tagger (metadata ENTITY_TAGS lists the tags in output order):
OUTPUT_ENTITY_TAGS = "entity_tags"  # int32 [None, tokens]: the decoded (Viterbi) tag ids, -1 = padding
OUTPUT_ENTITY_CONFIDENCE = "entity_confidence"  # float32 [None, tokens]: each decoded tag's marginal probability
OUTPUT_TOKEN_STARTS = "token_starts"  # int64 [None, tokens]: code-point offsets, -1 = padding
OUTPUT_TOKEN_ENDS = "token_ends"  # int64 [None, tokens]: exclusive ends, -1 = padding
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# serving_default cut down and optimized at export, what the predictor loads (base.serving_graph)
SERVING_GRAPH_FILE = "assets.extra/botyard_serving_graph.pb.gz"

# --- the predictor's wire contract ------------------------------------------------------------
LOAD_FAILED = "failed to load"  # in the 503 message of a bot whose live version failed to load
NO_LIVE_VERSION = "has no live version"  # in the 404 message of a bot with versions but none promoted

# keys of metadata.json
BOT_ID = "bot_id"
VERSION = "version"
CREATED_AT = "created_at"
DATA_HASH = "data_hash"
LABELS = "labels"
OOS_THRESHOLD = "oos_threshold"
HYPERPARAMETERS = "hyperparameters"
METRICS = "metrics"
ENTITY_TAGS = "entity_tags"  # BIO tag set in output order; absent: no entity tagger
ENTITY_TRANSITIONS = "entity_transitions"  # the CRF's learned scores: {"start", "pairs", "end"}
TOKENIZER = "tokenizer"  # the entity tokenizer's settings
# spans less confident than this are not returned (chosen on validation data by the evaluate step;
# absent: 0, every span); TF Serving users apply it to ``OUTPUT_ENTITY_CONFIDENCE`` themselves
ENTITY_THRESHOLD = "entity_threshold"
METADATA_KEYS = (BOT_ID, VERSION, CREATED_AT, DATA_HASH, LABELS, OOS_THRESHOLD, HYPERPARAMETERS, METRICS)
CODE_VERSION = "code_version"  # added by the store on register: botyard, TensorFlow, Python versions, git commit
# keys of a version's manifest (PUBLISHED) and of its gate verdict (verdicts/<version>.json)
MANIFEST_FILES = "files"  # {relative path: {"size": bytes, "sha256": hex}}
PUBLISHED_AT = "published_at"
VERDICT_BLESSED = "blessed"
VERDICT_REASONS = "reasons"
JUDGED_AT = "judged_at"

# --- files inside the steps' artifact folders (read and written by ``base.artifacts``) ----------
FEATURIZER_FILE = "featurizer.json"  # featurize: settings, vocabularies, idf weights
TRAINING_FILE = "training.json"  # train: labels, hyperparameters, history, device
BLESSING_FILE = "blessing.json"  # promotion gate: verdict, reasons, both versions' figures
BLESSED_MARKER = "BLESSED"  # an empty marker file beside blessing.json, as TFX's Evaluator writes
NOT_BLESSED_MARKER = "NOT_BLESSED"
INFRA_CHECK_FILE = "infra_check.json"  # infra check: verdict, reasons, latency
DEPLOYMENT_FILE = "deployment.json"  # deploy: action, previous version, URL
# --- files inside the evaluation artifact / the version's evaluation/ ------------------------
EVALUATION_FILE = "evaluation.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.csv"
PER_INTENT_FILE = "per_intent.md"
MISCLASSIFIED_FILE = "misclassified.csv"
ENTITY_MISTAKES_FILE = "entity_mistakes.csv"  # evaluate, with an entity tagger: utterances whose spans differ
