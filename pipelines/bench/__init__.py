"""``botyard bench``: the pipeline's own train / evaluate code on public intent data sets.

Suites (``harness.SUITES``) run ``botyard.components.train.core.train_intent_model`` and
``botyard.components.evaluate.core.evaluate`` exactly as the pipeline does, beside a TF-IDF +
logistic-regression baseline, and merge their figures into ``bench/results.json`` and
``bench/results.md`` (running one suite keeps the other suites' figures).
"""
