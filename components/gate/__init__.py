"""Promotion gate: bless a candidate model version only when it beats the thresholds and the live version."""
