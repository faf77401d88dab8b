"""The functions of the language that sympy lacks, as sympy ``Function`` s.

Each atom carries its derivative (``fdiff``), so gradients come from ``sympy.diff``;
what else lossc knows of each function (printing, curvature, enclosure) is its entry in
lossc/functions.py.
"""

from __future__ import annotations

import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.functions.elementary.miscellaneous import MinMaxBase

__all__ = ["sigmoid", "softplus", "pos", "step", "detach", "log1p", "expm1", "logratio", "quotient", "computed", "Abs"]


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


class log_softplus(sympy.Function):
    """log(softplus(x)), which the passes write for softplus(x)^a: softplus(x) = e^x underflows far below 0
    (x < -745 in float64) while its powers need not; its derivative sigmoid(x) / softplus(x) is written as
    exp(-softplus(-x) - log_softplus(x)), which tends to 1 there instead of 0 / 0."""

    is_real = True

    def fdiff(self, argindex=1):
        x = self.args[0]
        return sympy.exp(-softplus(-x) - log_softplus(x))

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sympy.log(sympy.log(1 + sympy.exp(x)))

    @classmethod
    def eval(cls, x):
        if x.is_number:
            return sympy.log(softplus(x))
        return None


class step(sympy.Function):
    """1 where x > 0, else 0: the derivative of ``pos`` (0 at the kink, like torch.relu)."""

    is_real = True

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    def _eval_is_nonnegative(self):
        return True


class sign(sympy.sign):
    """sign(x) in the language: -1, 0 or 1, whose derivative is 0 (torch.sign's; sympy's is 2 DiracDelta(x),
    which no printer prints). The printers know it as sign."""

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    def _eval_derivative(self, x):
        return sympy.S.Zero


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


class computed(sympy.Function):
    """The value of x as floating point computes it: x itself in code, but nothing sympy can prove about x
    (positive, nonzero) holds of it. The gradient's guard of x^g at x = 0 tests ``Ne(computed(x), 0)`` for a
    base that is positive yet may round to 0 (log(1 + sigmoid(m)) at m = -825): ``Ne(x, 0)`` would be True."""

    def _eval_is_real(self):
        return self.args[0].is_real

    def fdiff(self, argindex=1):
        return sympy.S.One


class quotient(sympy.Function):
    """a / b, kept as one division: the printers compute it as such, and sympy does not merge it with the
    factors around it. A batch gradient's coefficient a b / D^3 (D the sum of the batch sums a, b, …) is
    written quotient(a, D) quotient(b, D) / D (``passes.gradient._bounded_quotients``): each ratio is
    bounded (its sums are among D's), where D^-3 overflows in float32 once the sums are tiny (1e-16) and
    meets a factor 0 (inf * 0 = NaN)."""

    is_real = True

    def fdiff(self, argindex=1):
        a, b = self.args
        return 1 / b if argindex == 1 else -a / b ** 2

    def _eval_rewrite_as_Mul(self, a, b, **kwargs):
        return a / b


_SYMPY_COLLAPSE = MinMaxBase._collapse_arguments.__func__


def _collapse_min_max(cls, args, **assumptions):
    """sympy's removal of redundant Min / Max arguments, with its numeric step on the arguments themselves.

    sympy (1.14) bounds ``Min(1, A, B)`` by the smallest number it finds in any Min nested anywhere in its
    arguments, and drops the Max arguments above that bound: ``Min(Max(f, Min(1/4, m)), Min(Max(m, 1/2),
    1))`` became ``Min(1, Max(f, Min(1/4, m)))``, although the nested Min(1/4, m) bounds nothing once the
    Max around it takes f (the clamp's lower bound was lost: 3.14 instead of 2.25 for a margin loss). Only
    a number that is an argument bounds the result. So sympy's own steps run on the other arguments, and
    the numeric one here: ``Min(c, .., Max(d, ..))`` drops that Max when d >= c (``Max`` alike)."""
    args = list(args)
    numbers = [a for a in args if a.is_number]
    if not numbers:
        return _SYMPY_COLLAPSE(cls, args, **assumptions)
    rest = _SYMPY_COLLAPSE(cls, [a for a in args if not a.is_number], **assumptions)
    smaller = (lambda a, b: a < b) if issubclass(cls, sympy.Min) else (lambda a, b: a > b)
    other = sympy.Max if issubclass(cls, sympy.Min) else sympy.Min
    bound = None
    for v in numbers:
        if v.is_comparable and (bound is None or smaller(v, bound) == True):  # noqa: E712 (a sympy bool)
            bound = v
    if bound is not None:
        rest = [a for a in rest if not (isinstance(a, other) and any(
            v.is_comparable and (v == bound or smaller(bound, v) == True) for v in a.args))]  # noqa: E712
    return numbers + list(rest)


MinMaxBase._collapse_arguments = classmethod(_collapse_min_max)

_SYMPY_MIN_MAX_NEW = MinMaxBase.__new__


def _min_max_new(cls, *args, **assumptions):
    """sympy's Min / Max, NaN when an argument is NaN (as torch.minimum and maximum are): sympy refused it,
    "The argument 'nan' is not comparable", and simplify's numeric probes reach it (Expr.equals substitutes
    numbers into the Ne(pos(x), 0) of a folded derivative): pos(log_softmax(z / p)[y])^B1 could not be
    compiled."""
    args = [sympy.sympify(a) for a in args]
    if assumptions.get("evaluate", True) and any(a is sympy.S.NaN for a in args):
        return sympy.S.NaN
    return _SYMPY_MIN_MAX_NEW(cls, *args, **assumptions)


MinMaxBase.__new__ = _min_max_new


def _real_or_unknown(self) -> bool | None:
    """tanh(x).is_real: True where x is real, else unknown (None), never False.

    sympy (1.14) answers for an x it cannot prove real through x.as_real_imag() and (im x) mod pi, which
    expands and factors the whole of x (a gcd of polynomials in exp, log, sigmoid): minutes for tanh of
    bce() in a generated loss. Every value of a loss is real, so "unknown" loses nothing lossc uses."""
    return True if self.args[0].is_real else None


def _tanh_finite(self) -> bool | None:
    """tanh(x).is_finite: True where x is extended real (|tanh| <= 1, tanh(oo) = 1), else unknown (None);
    sympy's own builds cos(im x)^2 + sinh(re x)^2 from x.as_real_imag() first (see ``_real_or_unknown``)."""
    return True if self.args[0].is_extended_real else None


def _assume(cls: type, fact: str, handler) -> None:
    """cls's handler of the assumption ``fact`` replaced by handler (sympy looks it up in the table
    ``_prop_handler`` that it fills when the class is made, not as the method)."""
    setattr(cls, f"_eval_is_{fact}", handler)
    cls._prop_handler[fact] = handler


_assume(sympy.tanh, "real", _real_or_unknown)
_assume(sympy.tanh, "finite", _tanh_finite)


class _Gamma(sympy.Function):
    """A real function of the gamma family: a number's value is sympy's (``value``), the derivative the next
    member of the family (``derivative``)."""

    is_real = True

    @classmethod
    def eval(cls, x):
        if x.is_Integer and x.is_positive:  # (exact: lgamma(3) = log 2, digamma(1) = -EulerGamma)
            return cls.value(x)
        return None  # (another constant stays this atom, which the printers know; evalf gives its value)

    def _eval_evalf(self, prec):
        x = self.args[0].evalf(prec)
        return self.value(x).evalf(prec) if x.is_Number else None

    def fdiff(self, argindex=1):
        return self.derivative(self.args[0])


class lgamma(_Gamma):
    """log |Gamma(x)| (torch.lgamma): real at every real x but the poles 0, -1, -2, ...; sympy's loggamma is
    the complex branch below 0 (and not provably real on a real symbol, which sends sympy's Abs through re
    and im). Derivative: digamma."""

    @staticmethod
    def value(x):
        return sympy.loggamma(x) if x.is_positive else sympy.log(sympy.Abs(sympy.gamma(x)))

    @staticmethod
    def derivative(x):
        return digamma(x)


class digamma(_Gamma):
    """psi(x) = Gamma'(x) / Gamma(x) on the reals (torch.digamma); derivative: trigamma."""

    @staticmethod
    def value(x):
        return sympy.polygamma(0, x)

    @staticmethod
    def derivative(x):
        return trigamma(x)


class trigamma(_Gamma):
    """psi'(x) (torch.polygamma(1, x)); positive on the reals."""

    @staticmethod
    def value(x):
        return sympy.polygamma(1, x)

    @staticmethod
    def derivative(x):
        return sympy.polygamma(2, x)

    def _eval_is_positive(self):
        return self.args[0].is_extended_real


class acos(sympy.acos):
    """arccos, whose derivative keeps 1 - x^2 as (1 - x)(1 + x): near x = +-1 the difference 1 - x^2 of two
    numbers within rounding of 1 cancels, the product of the two factors does not. The printers know it as
    acos."""

    def fdiff(self, argindex=1):
        x = self.args[0]
        return -1 / sympy.sqrt((1 - x) * (1 + x))


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
                if isinstance(value, sympy.Abs) and value.args[0] in (proxy, -proxy):
                    return None  # nothing to evaluate but the sign: Abs(arg) as it is
                return _real_back(value, back)
        return super().eval(arg)

    def fdiff(self, argindex=1):
        return sympy.sign(self.args[0])

    def _eval_derivative(self, x):  # (sympy.Abs's own goes through re and im for such an argument)
        return self.fdiff() * sympy.diff(self.args[0], x)


def _real_back(value: sympy.Expr, back: dict) -> sympy.Expr:
    """value (an Abs evaluated on _as_real's proxy) with the dummies mapped back, its abs left as they are: an
    abs of a proxy sympy normalized (abs(-x) -> abs(x), its order of terms not the argument's) evaluated
    again on the original subexpressions could flip back, abs(a - b) -> abs(b - a) -> abs(a - b) ...
    without end (RecursionError, "expression nested too deeply")."""
    held = {a: sympy.Dummy("abs") for a in value.atoms(sympy.Abs)}
    unevaluated = {d: Abs(a.args[0].xreplace(back), evaluate=False) for a, d in held.items()}
    return value.xreplace(held).xreplace(back).xreplace(unevaluated)


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
