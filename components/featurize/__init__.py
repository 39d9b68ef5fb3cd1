"""Featurize step (like TFX's Transform): adapt the text features on the training split only."""
