"""Datasets: a registry of downloadable sources and their preparation, per experiment family."""
