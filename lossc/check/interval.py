"""Sound range analysis of sympy expressions: an interval that contains every value.

Interval arithmetic with outward-rounded endpoints (mpmath's ``iv``), over the
extended reals (endpoints may be infinite; 0 * inf counts as 0 because the
values themselves are finite). It is a proof technique: if the enclosure of
``e`` over a box lies in [0, inf], then ``e >= 0`` on the box. Enclosures can be
loose (every occurrence of a variable varies independently), never wrong;
anything the table does not know gives (-inf, inf).
"""

from __future__ import annotations

import sympy
from mpmath import iv, mpf

from .. import functions

INF = mpf("inf")
NINF = mpf("-inf")


class Interval:
    """[lo, hi] with mpmath endpoints (lo may be -inf, hi may be inf)."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi):
        self.lo, self.hi = mpf(lo), mpf(hi)

    def __repr__(self):
        return f"[{_show(self.lo)}, {_show(self.hi)}]"

    @property
    def finite(self) -> bool:
        return self.lo != NINF and self.hi != INF

    def text(self) -> str:
        return repr(self)


def _show(x) -> str:
    if x == INF:
        return "inf"
    if x == NINF:
        return "-inf"
    return sympy.sstr(sympy.Float(float(x), 6))


WHOLE = Interval(NINF, INF)


def point(value) -> Interval:
    v = iv.mpf(str(sympy.N(value, 30))) if not isinstance(value, (int, float)) else iv.mpf(value)
    return Interval(v.a, v.b)


def _exact(value) -> Interval:
    if value == sympy.oo:
        return Interval(INF, INF)
    if value == -sympy.oo:
        return Interval(NINF, NINF)
    return point(value)


def _add(a: Interval, b: Interval) -> Interval:
    lo = NINF if NINF in (a.lo, b.lo) else (iv.mpf(a.lo) + iv.mpf(b.lo)).a
    hi = INF if INF in (a.hi, b.hi) else (iv.mpf(a.hi) + iv.mpf(b.hi)).b
    return Interval(lo, hi)


def _prod(x, y):
    """Enclosure of the product of two endpoints, with 0 * inf = 0."""
    if x == 0 or y == 0:
        return mpf(0), mpf(0)
    if x in (INF, NINF) or y in (INF, NINF):
        s = INF if (x > 0) == (y > 0) else NINF
        return s, s
    r = iv.mpf(x) * iv.mpf(y)
    return r.a, r.b


def _mul(a: Interval, b: Interval) -> Interval:
    ends = [_prod(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    return Interval(min(e[0] for e in ends), max(e[1] for e in ends))


def _recip(a: Interval) -> Interval:
    """1/x: decreasing on each side of 0, so [1/hi, 1/lo] when 0 is not inside (1/inf = 0)."""
    def inv(v, low):
        if v in (INF, NINF):
            return mpf(0)
        r = 1 / iv.mpf(v)
        return r.a if low else r.b
    if a.lo > 0 or a.hi < 0:
        return Interval(inv(a.hi, True), inv(a.lo, False))
    if a.lo == 0 and a.hi > 0:
        return Interval(inv(a.hi, True), INF)
    if a.hi == 0 and a.lo < 0:
        return Interval(NINF, inv(a.lo, False))
    return WHOLE


def _increasing(fn, a: Interval, lo_limit=NINF, hi_limit=INF, exact=None) -> Interval:
    """Image of an increasing function: [fn(lo), fn(hi)] (limits at infinite endpoints);
    ``exact`` maps endpoints where the value is known exactly (log 1 = 0, 1^e = 1) to it."""
    exact = exact or {}
    lo = lo_limit if a.lo == NINF else exact[a.lo] if a.lo in exact else fn(iv.mpf(a.lo)).a
    hi = hi_limit if a.hi == INF else exact[a.hi] if a.hi in exact else fn(iv.mpf(a.hi)).b
    return Interval(lo, hi)


def _power(base: Interval, e) -> Interval:
    if e == 0:
        return Interval(1, 1)
    if e.is_Integer:
        n = int(e)
        if n < 0:
            return _recip(_power(base, sympy.Integer(-n)))
        if n % 2 == 1:
            return _increasing(lambda x: x ** n, base, NINF, INF)
        # even power: smallest at the point nearest 0
        hi_abs = max(abs(base.lo), abs(base.hi))
        lo_abs = mpf(0) if base.lo <= 0 <= base.hi else min(abs(base.lo), abs(base.hi))
        lo = (iv.mpf(lo_abs) ** n).a
        hi = INF if hi_abs == INF else (iv.mpf(hi_abs) ** n).b
        return Interval(lo, hi)
    if base.lo < 0:
        return WHOLE  # non-integer power of a possibly negative base: not real
    ev = iv.mpf(str(sympy.N(e, 30)))
    if e > 0:
        return _increasing(lambda x: x ** ev, base, 0, INF, {mpf(0): mpf(0), mpf(1): mpf(1)})
    lo = mpf(0) if base.hi == INF else mpf(1) if base.hi == 1 else (iv.mpf(base.hi) ** ev).a
    hi = INF if base.lo == 0 else mpf(1) if base.lo == 1 else (iv.mpf(base.lo) ** ev).b
    return Interval(lo, hi)


def _hull(*xs: Interval) -> Interval:
    return Interval(min(x.lo for x in xs), max(x.hi for x in xs))


class Unbounded(Exception):
    pass


def enclose(expr: sympy.Expr, box: dict) -> Interval:
    """An interval containing every value of ``expr`` for symbols in ``box`` (symbol -> Interval)."""
    out = WHOLE
    for variant in (expr, sympy.factor_terms(expr), _regroup(expr)):  # both enclosures are sound: keep their intersection
        try:
            r = _enclose(variant, box)
        except (Unbounded, ZeroDivisionError, ValueError, TypeError):
            continue
        out = Interval(max(out.lo, r.lo), min(out.hi, r.hi))
    return out


def _regroup(expr):
    """expr with its polynomial terms factored apart from the rest: a - a*p + f -> a*(1 - p) + f, so that
    the two occurrences of a rounded constant do not leave a spurious negative margin."""
    if not isinstance(expr, sympy.Add):
        return expr
    poly = [t for t in expr.args if t.is_polynomial()]
    rest = [t for t in expr.args if not t.is_polynomial()]
    return sympy.factor_terms(sympy.Add(*poly)) + sympy.Add(*rest)


def _enclose(e, box):
    if e in box:
        return box[e]
    if e.is_Number or e in (sympy.pi, sympy.E):
        if e is sympy.nan or e is sympy.zoo:
            raise Unbounded
        return _exact(e)
    if isinstance(e, sympy.Symbol):
        raise Unbounded
    if e.is_number and not e.has(sympy.zoo, sympy.nan):
        value = sympy.N(e, 30)
        if value.is_real and value.is_finite:
            return point(value)
        raise Unbounded
    if isinstance(e, sympy.Add):
        out = Interval(0, 0)
        for a in e.args:
            out = _add(out, _enclose(a, box))
        return out
    if isinstance(e, sympy.Mul):
        out = Interval(1, 1)
        for a in e.args:
            out = _mul(out, _enclose(a, box))
        return out
    if isinstance(e, sympy.Pow):
        base, ex = e.args
        if ex.is_number:
            return _power(_enclose(base, box), ex)
        b = _enclose(base, box)
        if b.lo < 0:
            raise Unbounded
        log_b = _function(functions.LANGUAGE["log"], [b])  # b^x = exp(x log b)
        return _function(functions.LANGUAGE["exp"], [_mul(_enclose(ex, box), log_b)])
    args = [_enclose(a, box) for a in e.args] if e.args else []
    entry = functions.of(e)
    if entry is not None and entry.interval is not None:
        return _function(entry, args)
    if isinstance(e, sympy.Piecewise):
        return _hull(*[_enclose(branch, box) for branch, _ in e.args])
    raise Unbounded


def _function(f, args: list[Interval]) -> Interval:
    """The image of intervals under a function of the table (lossc/functions.py): increasing in each
    argument, or even and increasing in |x|, with its values' limits at infinite ends."""
    if f.arity > 1:
        lo, hi = f.interval(*[iv.mpf(a.lo) for a in args]), f.interval(*[iv.mpf(a.hi) for a in args])
        return Interval(lo.a, hi.b)
    a = args[0]
    if f.domain_lo is not None and a.lo < f.domain_lo or f.domain_hi is not None and a.hi > f.domain_hi:
        return WHOLE
    if f.shape == "none":  # (not monotone: the entry's interval function encloses the whole interval)
        if a.lo == NINF or a.hi == INF:
            return Interval(*f.value_range)
        image = f.interval(iv.mpf([a.lo, a.hi]))
        return Interval(max(image.a, f.value_range[0]), min(image.b, f.value_range[1]))
    if f.shape == "decreasing":
        return Interval(f.value_range[0] if a.hi == INF else f.interval(iv.mpf(a.hi)).a,
                        f.value_range[1] if a.lo == NINF else f.interval(iv.mpf(a.lo)).b)
    if f.shape == "even":
        near = mpf(0) if a.lo <= 0 <= a.hi else min(abs(a.lo), abs(a.hi))
        a = Interval(near, max(abs(a.lo), abs(a.hi)))
    return _increasing(f.interval, a, *f.value_range, f.exact)


def enclose_on(expr: sympy.Expr, x: sympy.Symbol, lo, hi, pieces: int = 16, fixed: dict | None = None) -> Interval:
    """Enclosure of ``expr`` for x in [lo, hi] (sympy numbers, possibly infinite), tightened by
    splitting the range: infinite ends become [K, inf) pieces, the finite part is bisected."""
    fixed = fixed or {}
    cuts = _cuts(lo, hi, pieces)
    parts = []
    for a, b in zip(cuts, cuts[1:]):
        box = dict(fixed)
        box[x] = Interval(_end(a, low=True), _end(b, low=False))
        parts.append(enclose(expr, box))
    return _hull(*parts)


def _end(v, low: bool):
    if v == -sympy.oo:
        return NINF
    if v == sympy.oo:
        return INF
    p = point(v)
    return p.lo if low else p.hi


def _cuts(lo, hi, pieces):
    lo, hi = sympy.sympify(lo), sympy.sympify(hi)
    finite_lo = lo if lo.is_finite else None
    finite_hi = hi if hi.is_finite else None
    span = 64
    a = finite_lo if finite_lo is not None else (min(finite_hi, 0) - span if finite_hi is not None else -span)
    b = finite_hi if finite_hi is not None else (max(a, 0) + span)
    inner = [a + (b - a) * sympy.Rational(k, pieces) for k in range(pieces + 1)]
    cuts = ([lo] if finite_lo is None else []) + inner + ([hi] if finite_hi is None else [])
    return cuts
