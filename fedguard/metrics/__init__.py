"""Metrics computed from round records and ground truth (never seen by attacks or defenses)."""
