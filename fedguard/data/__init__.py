"""Datasets, splits and partitioners."""
