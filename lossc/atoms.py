"""The functions of the language that sympy lacks, as sympy ``Function`` s.

Each atom carries its derivative (``fdiff``), so gradients come from ``sympy.diff``;
the printers map them to code through their tables.
"""

from __future__ import annotations

import sympy
from sympy.codegen.cfunctions import expm1, log1p

__all__ = ["sigmoid", "softplus", "pos", "step", "detach", "log1p", "expm1", "logratio", "Abs", "FUNCTIONS"]


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
        if x.is_Number:  # a constant has no gradient to stop
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


class Abs(sympy.Abs):
    """abs of a real value (every value of a loss is real, NaN off its domain): sympy's Abs of an argument it
    cannot prove real evaluates through re, im and arg, abs(exp(x)) -> exp(re(x)) with
    re(tanh(x)) -> sinh(x) cosh(x) / (sinh(x)^2 + cos(im x)^2), inf / inf once x passes 710 (x the
    log(1 - sigmoid(f)) of bce, real but not provably so before the stable rewrites); the derivative is
    sign(x) x', not one through re and im. The argument's subexpressions sympy cannot prove real are taken
    as real numbers while Abs evaluates (abs(exp(x)) = exp(x), abs(2 x) = 2 abs(x)). The printers know
    it as Abs."""

    @classmethod
    def eval(cls, arg):
        if isinstance(arg, sympy.Expr) and arg.is_extended_real is None:
            proxy, back = _as_real(arg)
            if proxy != arg:
                value = cls(proxy)
                if isinstance(value, cls) and value.args[0] == proxy:
                    return None  # nothing to evaluate: Abs(arg) as it is
                return value.xreplace(back)
        return super().eval(arg)

    def fdiff(self, argindex=1):
        return sympy.sign(self.args[0])

    def _eval_derivative(self, x):  # (sympy.Abs's own goes through re and im for such an argument)
        return self.fdiff() * sympy.diff(self.args[0], x)


def _as_real(e: sympy.Expr):
    """e with its innermost subexpressions that sympy cannot prove real (log(1 - sigmoid(f)), sqrt(2 + tanh(f)))
    replaced by real dummies, and the map back."""
    back: dict = {}

    def walk(n):
        if not isinstance(n, sympy.Expr) or not n.args or n.is_extended_real is not None:
            return n
        new = n.func(*[walk(a) for a in n.args])
        if isinstance(new, sympy.Expr) and new.is_extended_real is None:
            d = sympy.Dummy("x", real=True)
            back[d] = n
            return d
        return new

    return walk(e), back


# The language's scalar functions: name -> (arity, builder).
FUNCTIONS: dict[str, tuple[int, object]] = {
    "log": (1, sympy.log),
    "exp": (1, sympy.exp),
    "sqrt": (1, sympy.sqrt),
    "abs": (1, Abs),
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
