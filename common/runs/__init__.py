"""Runs: presets, training (alone and stacked) and the evaluation of a study's models."""
