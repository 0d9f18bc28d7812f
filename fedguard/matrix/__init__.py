"""Attack × defense matrices: expansion, execution, storage and summaries."""
