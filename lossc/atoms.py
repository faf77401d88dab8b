"""The functions of the language that sympy lacks, as sympy ``Function`` s.

Each atom carries its derivative (``fdiff``), so gradients come from ``sympy.diff``;
the printers map them to code through their tables.
"""

from __future__ import annotations

import sympy
from sympy.codegen.cfunctions import expm1, log1p

__all__ = ["sigmoid", "softplus", "pos", "step", "detach", "log1p", "expm1", "logratio", "FUNCTIONS"]


class sigmoid(sympy.Function):
    """1 / (1 + exp(-x))."""

    is_real = True

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * sigmoid(-self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    @classmethod
    def eval(cls, x):
        if x.is_number:  # a constant (sigmoid(0.37), softplus(sigmoid(0.37))): its value, comparable
            return 1 / (1 + sympy.exp(-x))
        return None

    def _eval_is_positive(self):
        return self.args[0].is_real


class softplus(sympy.Function):
    """log(1 + exp(x)), computed without overflow."""

    is_real = True

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))

    @classmethod
    def eval(cls, x):
        if x.is_number:  # a constant, so that max(m, softplus(0.5)) can compare it
            return sympy.log(1 + sympy.exp(x))
        return None

    def _eval_is_positive(self):
        return self.args[0].is_real


class step(sympy.Function):
    """1 where x > 0, else 0: the derivative of ``pos`` (0 at the kink, like torch.relu)."""

    is_real = True

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    def _eval_is_nonnegative(self):
        return True


class pos(sympy.Function):
    """max(x, 0), the positive part."""

    is_real = True

    def fdiff(self, argindex=1):
        return step(self.args[0])

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sympy.Max(x, 0)
        if x.is_nonnegative:
            return x
        if x.is_nonpositive:
            return sympy.S.Zero
        return None

    def _eval_is_nonnegative(self):
        return True

    def _eval_rewrite_as_Max(self, x, **kwargs):
        return sympy.Max(x, 0)


class detach(sympy.Function):
    """The value of x, through which no gradient flows (stop-gradient)."""

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    @classmethod
    def eval(cls, x):
        if x.is_number:  # a constant (detach(tanh(0.1))) has no gradient to stop: its value, comparable
            return x
        return None

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_positive

    def _eval_is_nonnegative(self):
        return self.args[0].is_nonnegative


class logratio(sympy.Function):
    """d / (1 - exp(d)) for d <= 0, i.e. log(p) / (1 - p) with d = log p; -1 at d = 0.

    Finite where its two factors are not: it lets a gradient term x^(a-1) * log(1 - x)
    be written x^a * logratio(...) so that it stays finite as x -> 0.
    """

    is_real = True

    def fdiff(self, argindex=1):
        d = self.args[0]
        return (1 - sympy.exp(d) + d * sympy.exp(d)) / (1 - sympy.exp(d)) ** 2

    def _eval_rewrite_as_exp(self, d, **kwargs):
        return d / (1 - sympy.exp(d))


# The language's scalar functions: name -> (arity, builder).
FUNCTIONS: dict[str, tuple[int, object]] = {
    "log": (1, sympy.log),
    "exp": (1, sympy.exp),
    "sqrt": (1, sympy.sqrt),
    "abs": (1, sympy.Abs),
    "log1p": (1, log1p),
    "expm1": (1, expm1),
    "softplus": (1, softplus),
    "sigmoid": (1, sigmoid),
    "tanh": (1, sympy.tanh),
    "pos": (1, pos),
    "detach": (1, detach),
    "min": (2, sympy.Min),
    "max": (2, sympy.Max),
    "clamp": (3, lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi)),
}
