"""Run directories and atomic file writes."""
