"""Experiment configurations (ml-collections), one file a model."""
