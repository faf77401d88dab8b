"""Kinds bind the names a loss may use and pick its normal form: one file each."""

from __future__ import annotations

from collections.abc import Callable
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
    #: random inputs of a shape for ``lossc bench``: (shape, dtype, device, generator) -> (input, target)
    example: Callable | None = None
    #: the axis ``lossc plot`` draws the kind's losses along
    curve: "Curve | None" = None
    #: what ``lossc check`` reads of an elementwise kind (lossc/check/elementwise.py)
    checks: "Checks | None" = None

    @property
    def normal_form(self) -> "Form":
        """The form object (lossc/forms.py) this kind lowers to."""
        from ..forms import FORMS
        return FORMS[self.form]


@dataclass(frozen=True)
class Curve:
    """One axis to draw a kind's losses along: the range of the varied input ``s``, the labels, and the
    sampler (module, s) -> (x, loss, dL/d(varied input)), each a tensor the length of s."""

    range: tuple[float, float]
    x_label: str
    grad_label: str
    sample: Callable


@dataclass(frozen=True)
class Checks:
    """An elementwise kind's facts for the property checks: its functions of one variable and how the
    properties read for it."""

    #: expr -> [(label, variable, expr in it, target, sign, symbolic, monotone direction)]: input = sign * x
    cases: Callable
    convex_in: str                             # the variable convexity is in, as evidence says it
    monotone: str                              # the direction the loss should move, as evidence says it
    labels: tuple[float, float] | None = None  # (positive, negative) target of a classification kind
    label_sum: str = ""                        # the sum of the loss over both labels, as evidence says it
    slope: str = ""                            # the slope at 0 classification calibration reads
    slope_note: str = ""                       # why that slope decides it for this kind's form
    logit: bool = False                        # the score is a logit (sigmoid link): properness applies
    soft_targets: bool = False                 # targets in [0, 1] between the labels make sense too


def _load() -> dict[str, Kind]:
    """Every module of this package defines one kind (``KIND``): a new kind is one new file."""
    import importlib
    import pkgutil
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return {m.KIND.name: m.KIND for m in sorted(modules, key=lambda m: m.ORDER)}


KINDS: dict[str, Kind] = _load()
