"""The functions of the language, and the atoms the passes add: one entry each.

An entry holds everything lossc knows about one function: how the language builds it (sympy), how the
torch and triton printers print it, its curvature, sign and monotonicity (check/curvature.py), its interval
enclosure (check/interval.py), whether it is smooth and how it reads in exp/log (check/onevar.py), and a
torch function with a domain for the table's own test (tests/test_functions.py), which walks every entry
and compares lossc's code with it numerically. Adding a function to the language is adding an entry.

The sympy classes of the atoms sympy lacks (sigmoid, softplus, pos, ...) are in lossc/atoms.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mpmath
import sympy
from mpmath import iv
from sympy.codegen.cfunctions import expm1, log1p

from .atoms import (Abs, acos, computed, detach, digamma, lgamma, log_softplus, logratio, pos, quotient, sigmoid,
                    sign, softplus, step, trigamma)

INF, NINF = mpmath.mpf("inf"), mpmath.mpf("-inf")
# Curvature facts, in check/curvature.py's words.
CONVEX, CONCAVE, AFFINE, UNKNOWN = "convex", "concave", "affine", "unknown"
POS, NONNEG, ANY = "positive", "nonnegative", "any sign"


@dataclass(frozen=True)
class Function:
    """One function of the language (``build`` set) or an atom only the passes write (``build`` None)."""

    name: str                               # its name in the language (or the atom's)
    node: type | None                       # the sympy class the IR holds (None: built from others, as sqrt)
    build: Callable | None = None           # the language's builder, from lowered arguments
    arity: int = 1
    torch: str | None = None                # the tensor function it prints as (None: the printer's own rule)
    pooled: str | None = None               # in the pooled program, computed into {out} ({0} its argument)
    scalar: str | None = None               # code on Python numbers, {} its argument (None: Python's math)
    triton: str | None = None               # the tl function it prints as ("": the value itself)
    curvature: str | None = None            # convex | concave | affine | unknown; None: not a DCP atom
    sign: str = ANY                         # the sign of its value, or "max" / "min" / "argument" (a rule)
    needs: str | None = None                # the sign its argument must have (its domain)
    shape: str = "increasing"               # increasing (in each argument) | decreasing | even (increasing in
    #                                         |x|) | none (not monotone: ``interval`` encloses whole intervals)
    interval: Callable | None = None        # an interval-arithmetic formula on mpmath ``iv`` numbers
    value_range: tuple = (NINF, INF)        # its values' limits (its value at infinite endpoints)
    domain_lo: float | None = None          # below it the function is not real: no enclosure
    domain_hi: float | None = None          # above it the function is not real: no enclosure
    exact: dict = field(default_factory=dict)  # endpoints where the value is known exactly
    smooth: bool = True                     # differentiable everywhere (no kink, no jump)
    exp_log: Callable | None = None         # the atom in exp / log, for the checker's calculus
    reference: str | None = None            # a torch function for the table's test (its dotted name)
    sample: tuple = (-6.0, 6.0)             # where the test samples it


def _max0(v):
    return iv.mpf([max(v.a, 0), max(v.b, 0)])


def _identity(v):
    return v


def _jump(v):
    """0 below 0, 1 above: step(x) and Heaviside(x) (either value at 0)."""
    return iv.mpf([0, 0]) if v.b < 0 else iv.mpf([1, 1]) if v.a > 0 else iv.mpf([0, 1])


#: where lgamma has its minimum on (0, inf) (decreasing before, increasing after; convex there)
_LGAMMA_MIN = mpmath.findroot(mpmath.digamma, 1.46)
_LGAMMA_LEAST = mpmath.log(mpmath.gamma(_LGAMMA_MIN)) - mpmath.mpf(1e-12)  # (a little below: a lower bound)


def _lgamma_iv(v):
    """An enclosure of log |Gamma| on an interval of (0, inf): monotone on each side of its minimum."""
    ends = _widened(lambda x: mpmath.log(mpmath.gamma(x)))
    lo, hi = mpmath.mpf(v.a), mpmath.mpf(v.b)
    if hi <= _LGAMMA_MIN:
        return iv.mpf([ends(iv.mpf(hi)).a, ends(iv.mpf(lo)).b])
    if lo >= _LGAMMA_MIN:
        return iv.mpf([ends(iv.mpf(lo)).a, ends(iv.mpf(hi)).b])
    least = ends(iv.mpf(_LGAMMA_MIN)).a
    return iv.mpf([least, max(ends(iv.mpf(lo)).b, ends(iv.mpf(hi)).b)])


def _signs(v):
    """sign(x): -1 below 0, 1 above, 0 at 0."""
    lo = -1 if v.a < 0 else 0 if v.a == 0 else 1
    hi = 1 if v.b > 0 else 0 if v.b == 0 else -1
    return iv.mpf([lo, hi])


def _extreme(pick):
    def ends(*vs):
        return iv.mpf([pick(v.a for v in vs), pick(v.b for v in vs)])
    return ends


def _widened(fn):
    """An enclosure of a monotone mpmath function without an ``iv`` version: its value at each end at
    mpmath's working precision, widened by far more than that precision's error."""
    def ends(v):
        lo, hi = fn(mpmath.mpf(v.a)), fn(mpmath.mpf(v.b))
        slack = mpmath.mpf(2) ** (-mpmath.mp.prec + 8)
        return iv.mpf([lo - slack * (1 + abs(lo)), hi + slack * (1 + abs(hi))])
    return ends


ENTRIES: tuple[Function, ...] = (
    Function("log", sympy.log, sympy.log, torch="torch.log", triton="tl.log", curvature=CONCAVE, needs=POS,
             interval=iv.log, domain_lo=0, exact={mpmath.mpf(1): mpmath.mpf(0)}, reference="torch.log",
             sample=(0.01, 20.0)),
    Function("exp", sympy.exp, sympy.exp, torch="torch.exp", triton="tl.exp", curvature=CONVEX, sign=POS,
             interval=iv.exp, value_range=(0, INF), exact={mpmath.mpf(0): mpmath.mpf(1)}, reference="torch.exp"),
    Function("sqrt", None, sympy.sqrt, curvature=CONCAVE, sign=NONNEG, needs=NONNEG, reference="torch.sqrt",
             sample=(0.01, 20.0)),  # (a power, x^(1/2): printed and enclosed as one)
    Function("abs", sympy.Abs, Abs, torch="torch.abs", triton="tl.abs", curvature=CONVEX, sign=NONNEG,
             shape="even", interval=_identity, value_range=(0, INF), smooth=False, reference="torch.abs"),
    Function("log1p", log1p, log1p, torch="torch.log1p", scalar="math.log1p({})", triton="_tl_log1p",
             curvature=CONCAVE, interval=lambda v: iv.log(1 + v), domain_lo=-1,
             exact={mpmath.mpf(0): mpmath.mpf(0)}, exp_log=lambda x: sympy.log(1 + x), reference="torch.log1p",
             sample=(-0.99, 20.0)),
    Function("expm1", expm1, expm1, torch="torch.expm1", scalar="math.expm1({})", triton="_tl_expm1",
             curvature=CONVEX, interval=lambda v: iv.exp(v) - 1, value_range=(-1, INF),
             exact={mpmath.mpf(0): mpmath.mpf(0)}, exp_log=lambda x: sympy.exp(x) - 1, reference="torch.expm1"),
    Function("softplus", softplus, softplus, torch="_softplus", pooled="_softplus({0}, {out}, {tmp})",
             scalar="_scalar(_softplus, {})", triton="_tl_softplus", curvature=CONVEX, sign=POS,
             interval=lambda v: iv.log(1 + iv.exp(v)), value_range=(0, INF),
             exp_log=lambda x: sympy.log(1 + sympy.exp(x)), reference="torch.nn.functional.softplus",
             sample=(-30.0, 30.0)),
    Function("sigmoid", sigmoid, sigmoid, torch="torch.sigmoid", scalar="_scalar(torch.sigmoid, {})",
             triton="_tl_sigmoid", curvature=UNKNOWN, sign=POS, interval=lambda v: 1 / (1 + iv.exp(-v)),
             value_range=(0, 1), exp_log=lambda x: 1 / (1 + sympy.exp(-x)), reference="torch.sigmoid",
             sample=(-30.0, 30.0)),
    Function("tanh", sympy.tanh, sympy.tanh, torch="torch.tanh", triton="_tl_tanh", curvature=UNKNOWN,
             interval=lambda v: 1 - 2 / (iv.exp(2 * v) + 1), value_range=(-1, 1), reference="torch.tanh"),
    Function("pos", pos, pos, torch="torch.relu", pooled="torch.clamp_min({0}, 0, out={out})",  # (relu has no out=)
             scalar="max({}, 0.0)", triton="_tl_pos", curvature=CONVEX, sign=NONNEG, interval=_max0,
             value_range=(0, INF), smooth=False, reference="torch.relu"),
    Function("detach", detach, detach, torch="_detach", scalar="{}", triton="", curvature=AFFINE,
             sign="argument", interval=_identity, exp_log=lambda x: x, reference="torch.Tensor.detach"),
    Function("min", sympy.Min, sympy.Min, arity=2, curvature=CONCAVE, sign="min", interval=_extreme(min),
             smooth=False, reference="torch.minimum"),
    Function("max", sympy.Max, sympy.Max, arity=2, curvature=CONVEX, sign="max", interval=_extreme(max),
             smooth=False, reference="torch.maximum"),
    Function("clamp", None, lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi), arity=3, reference="torch.clamp"),
    Function("erf", sympy.erf, sympy.erf, torch="torch.erf", triton="tl.erf", curvature=UNKNOWN,
             interval=_widened(mpmath.erf), value_range=(-1, 1), reference="torch.erf", sample=(-4.0, 4.0)),
    # The atoms the passes write (derivatives and stable forms); the language cannot name them.
    Function("step", step, torch="_step", pooled="torch.gt({0}, 0, out={out})", scalar="float({} > 0)",
             triton="_tl_step", interval=_jump, value_range=(0, 1), smooth=False),
    Function("heaviside", sympy.Heaviside, torch="_heaviside", pooled="_heaviside({0}, {out}, {mask})",
             scalar="_scalar(_heaviside, {})", triton="_tl_heaviside", interval=_jump, value_range=(0, 1),
             smooth=False),
    Function("sign", sympy.sign, sign, torch="torch.sign", scalar="math.copysign(1.0, {0}) if {0} else 0.0",
             triton="_tl_sign", shape="none", interval=_signs, value_range=(-1, 1), smooth=False,
             reference="torch.sign"),  # (the passes write sympy's, the language lossc's: one class name)
    Function("logratio", logratio, torch="_logratio", pooled="_logratio({0}, {out}, {tmp}, {mask})",
             scalar="_scalar(_logratio, {})", triton="_tl_logratio", shape="none",
             exp_log=lambda d: d / (1 - sympy.exp(d))),
    Function("log_softplus", log_softplus, torch="_log_softplus", scalar="_scalar(_log_softplus, {})",
             triton="_tl_log_softplus", interval=lambda v: iv.log(iv.log(1 + iv.exp(v))),
             exp_log=lambda x: sympy.log(sympy.log(1 + sympy.exp(x)))),
    Function("computed", computed, triton="", interval=_identity),  # (its printers: the value, in parentheses)
    Function("quotient", quotient, arity=2, shape="none"),  # (printed as one division by each printer)
    Function("sin", sympy.sin, sympy.sin, torch="torch.sin", pooled="torch.sin({0}, out={out})", triton="tl.sin",
             curvature=UNKNOWN, shape="none", interval=iv.sin, value_range=(-1, 1), reference="torch.sin"),
    Function("cos", sympy.cos, sympy.cos, torch="torch.cos", pooled="torch.cos({0}, out={out})", triton="tl.cos",
             curvature=UNKNOWN, shape="none", interval=iv.cos, value_range=(-1, 1), reference="torch.cos"),
    Function("atan", sympy.atan, sympy.atan, torch="torch.atan", pooled="torch.atan({0}, out={out})",
             triton="_tl_atan", curvature=UNKNOWN, interval=_widened(mpmath.atan),
             value_range=(-mpmath.pi / 2, mpmath.pi / 2), exact={mpmath.mpf(0): mpmath.mpf(0)},
             reference="torch.atan", sample=(-30.0, 30.0)),
    Function("acos", acos, acos, torch="torch.acos", pooled="torch.acos({0}, out={out})", triton="_tl_acos",
             curvature=UNKNOWN, sign=NONNEG, shape="decreasing", interval=_widened(mpmath.acos),
             value_range=(0, mpmath.pi), domain_lo=-1, domain_hi=1, reference="torch.acos", sample=(-0.999, 0.999)),
    Function("lgamma", lgamma, lgamma, torch="torch.lgamma", pooled="torch.lgamma({0}, out={out})",
             scalar="math.lgamma({})", triton="_tl_lgamma", curvature=CONVEX, needs=POS, shape="none",
             interval=_lgamma_iv, value_range=(_LGAMMA_LEAST, INF),
             domain_lo=0, reference="torch.lgamma", sample=(0.05, 30.0)),
    Function("digamma", digamma, digamma, torch="_digamma", pooled="torch.digamma({0}, out={out})",
             scalar="_scalar(torch.digamma, {})", triton="_tl_digamma", curvature=CONCAVE, needs=POS,
             interval=_widened(mpmath.digamma), domain_lo=0, reference="torch.digamma", sample=(0.05, 30.0)),
    Function("trigamma", trigamma, torch="_trigamma",
             scalar="_scalar(_trigamma, {})", triton="_tl_trigamma", sign=POS, shape="none"),
    Function("sinh", sympy.sinh, sympy.sinh, torch="torch.sinh", pooled="torch.sinh({0}, out={out})",
             triton="_tl_sinh", curvature=UNKNOWN, interval=lambda v: (iv.exp(v) - iv.exp(-v)) / 2,
             exact={mpmath.mpf(0): mpmath.mpf(0)}, reference="torch.sinh"),
    Function("cosh", sympy.cosh, sympy.cosh, torch="torch.cosh", pooled="torch.cosh({0}, out={out})",
             triton="_tl_cosh", curvature=CONVEX, sign=POS, shape="even",
             interval=lambda v: (iv.exp(v) + iv.exp(-v)) / 2, value_range=(1, INF), reference="torch.cosh"),
)

LANGUAGE: dict[str, Function] = {f.name: f for f in ENTRIES if f.build is not None}
_BY_NODE: dict[str, Function] = {f.node.__name__: f for f in ENTRIES if f.node is not None}
NONSMOOTH: tuple[type, ...] = tuple(f.node for f in ENTRIES if not f.smooth and f.node is not None)


def of(expr) -> Function | None:
    """The entry of a sympy node (by its class's name: lossc's Abs and sympy's are one), or None."""
    return _BY_NODE.get(type(expr).__name__)


def in_exp_log(e: sympy.Expr) -> sympy.Expr:
    """e with every atom that has an exp/log form written in it (sympy can differentiate, simplify and
    take limits of those)."""
    for f in ENTRIES:
        if f.exp_log is not None and f.node is not None:
            e = e.replace(f.node, f.exp_log)
    return e
