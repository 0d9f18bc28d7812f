"""Models (registered by name) and flat-parameter helpers."""
