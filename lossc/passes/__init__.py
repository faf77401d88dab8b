"""Passes: pure functions ``LossSpec -> LossSpec``, applied in the order of ``PASSES``."""

from __future__ import annotations

from ..ir import LossSpec
from .gradient import gradient
from .stabilize import stabilize

PASSES = (stabilize, gradient)


def derive(spec: LossSpec) -> LossSpec:
    """Run every pass: stable rewrites of the loss, then its gradient (itself rewritten). The result keeps
    the spec as written (``.written``) beside its stable form."""
    written = spec.written or spec
    for step in PASSES:
        spec = step(spec)
    return spec.with_(written=written)
