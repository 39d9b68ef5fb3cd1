"""The deploy step: put a registered model version behind a KServe InferenceService."""
