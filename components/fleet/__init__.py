"""Fleet training: the per-bot gate, each bot's outcome, and the fleet run's summary."""
