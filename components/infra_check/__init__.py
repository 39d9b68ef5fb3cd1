"""Infra check (like TFX's InfraValidator): the candidate must load and answer in a real predictor."""
