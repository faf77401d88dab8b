"""The checker of multiclass losses (row normal form: logits z, target class y): the loss in p_t, its
separable form and class sums (lossc/check/row.py); the properties are lossc/check/properties/*.py."""

from __future__ import annotations

from . import row as rowalg
from .ladder import Checker
from .onevar import elementary, is_smooth


class Multiclass(Checker):
    """One multiclass loss at one parameter setting, in the shapes the properties read."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.spec = ctx.spec
        self.values = ctx.values
        self.g = rowalg.pt_function(self.spec, self.values)
        self.sep = rowalg.separable(self.spec, self.values)
        self.sums = rowalg.class_sums(self.spec, self.values)
        self.invariant = self.sums is not None  # a function of softmax(z): shift-invariant
        # the derivative-based routes (properness, the minimiser map, monotonicity, smoothness) need smooth
        # forms: sympy differentiates a where/pos branch by branch and sees no jump (where(p_t < 0.5, 0, 1))
        self.sep_smooth = self.sep is not None and is_smooth(elementary(self.sep.G)) and all(
            is_smooth(elementary(h)) for _, h in self.sep.terms)
