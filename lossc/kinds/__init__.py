"""Kinds bind the names a loss may use and pick its normal form: one file each."""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy


@dataclass(frozen=True)
class Kind:
    """What a kind of loss is called with and which names its body sees."""

    name: str
    form: str                                  # "row" | "elementwise" | "batch" | "composite"
    names: dict                                # name -> sympy expression, Vec or TargetIndex
    features: tuple[tuple[sympy.Symbol, sympy.Expr], ...] = ()  # derived per-element values
    target: str = "index"                      # "index" | "binary" | "sign" | "real"
    doc: str = ""
    functions: dict = field(default_factory=dict)  # extra functions the kind defines


def _load() -> dict[str, Kind]:
    from . import batch, binary, margin, multiclass, regression, tasks
    return {k.KIND.name: k.KIND for k in (multiclass, binary, margin, regression, batch, tasks)}


KINDS: dict[str, Kind] = _load()
