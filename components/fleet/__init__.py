"""Fleet training: the per-bot data check, each bot's outcome, and the fleet run's summary."""
