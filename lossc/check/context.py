"""What every property check of one loss shares: the spec, parameter values, the evaluator."""

from __future__ import annotations

from functools import cached_property

import sympy

from ..ir import LossSpec


def exact(value) -> sympy.Expr:
    """A parameter value as an exact number: 0.1 -> 1/10 (the decimal the float prints as)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a parameter value")
    if isinstance(value, int):
        return sympy.Integer(value)
    return sympy.Rational(repr(float(value)))


class Context:
    """One loss at one setting of its parameters."""

    def __init__(self, spec: LossSpec, params: dict):
        self.spec = spec
        self.params = params            # name -> python value, defaults filled in
        self.values = {}                # parameter symbol -> exact number
        for p in spec.params:
            value = params.get(p.name)
            if p.type == "class":
                continue  # (losses with class vectors are not analysed symbolically)
            if p.type == "vector":
                n = dict(spec.bound)[p.size]
                items = list(value) if isinstance(value, (list, tuple)) else [value] * n
                if len(items) == 1 and n > 1:
                    items = items * n
                for i, v in enumerate(items):
                    self.values[p.element(i + 1)] = exact(v)
            elif value is not None:
                self.values[p.symbol] = exact(value)

    @property
    def expr(self) -> sympy.Expr:
        return self.spec.expr.xreplace(self.values)

    @cached_property
    def evaluator(self):
        from .numeric import Evaluator
        return Evaluator(self.spec, self.params)

    def warm(self) -> None:
        """Build the evaluator now, in this process, so that every forked worker shares it; a failure is
        left for the properties that use it to report."""
        try:
            self.evaluator
        except Exception:  # noqa: BLE001 - reported by each property that needs it
            pass

    def setting(self) -> str:
        """'at gamma = 2' / 'with no parameters', for evidence texts."""
        if not self.params:
            return "(no parameters)"
        return "at " + ", ".join(f"{k} = {v}" for k, v in self.params.items())
