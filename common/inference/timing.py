"""Where an evaluation's time goes: named units timed exclusively (a unit's time excludes the
units it calls), with counts (steps, decoder rows) that the code adds as it runs. Off unless a
profile turns it on (`recording()`), so the evaluation pays nothing for it otherwise.

    with unit("q* flow fit"):          # in the evaluation code
        ...
        count(steps=t, grad_rows=rows) # the innermost open unit's counters

A unit opened inside another is named "outer > inner" (BDMC's own q* fits apart from the
evaluation's). Counters: steps (optimisation steps), grad_rows (decoder rows evaluated with
their input gradient), fwd_rows (decoder rows evaluated forward only).
"""
import contextlib
import time

import torch

_ON = False
_STACK = []          # [name, start, time spent in children]
TOTALS = {}          # name -> {"s": exclusive seconds, "calls": n, and the counters}


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextlib.contextmanager
def recording():
    """Turn unit timing on for the block, starting from empty TOTALS; yields TOTALS."""
    global _ON
    TOTALS.clear()
    _ON = True
    try:
        yield TOTALS
    finally:
        _ON = False


@contextlib.contextmanager
def unit(name: str):
    if not _ON:
        yield
        return
    _sync()
    name = f"{_STACK[-1][0]} > {name}" if _STACK else name   # nested units keep their parent
    _STACK.append([name, time.perf_counter(), 0.0])
    try:
        yield
    finally:
        _sync()
        name, start, children = _STACK.pop()
        spent = time.perf_counter() - start
        entry = TOTALS.setdefault(name, {"s": 0.0, "calls": 0})
        entry["s"] += spent - children
        entry["calls"] += 1
        if _STACK:
            _STACK[-1][2] += spent


def count(**counts) -> None:
    """Add to the innermost open unit's counters (steps, rows, ...)."""
    if _ON and _STACK:
        entry = TOTALS.setdefault(_STACK[-1][0], {"s": 0.0, "calls": 0})
        for k, v in counts.items():
            entry[k] = entry.get(k, 0) + v
