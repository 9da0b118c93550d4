"""Shared models, estimators and utilities for the inference-suboptimality study.

Public API: `inference_gaps(encoder, decoder, x, ...)` measures any VAE's approximation and
amortization gaps with the studies' estimators and certificates (common/measure.py; from the
shell: `python -m common.measure`)."""

__all__ = ["inference_gaps", "Measurement"]


def __getattr__(name):   # imported on first use, so `import common.x` stays as light as before
    if name in __all__:
        from . import measure
        return getattr(measure, name)
    raise AttributeError(f"module 'common' has no attribute {name!r}")
