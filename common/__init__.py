"""Shared models, estimators and utilities for the inference-suboptimality study."""
