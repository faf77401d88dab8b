"""The one-variable engine: loss functions of one real variable (margin m, residual r, logit f).

Smooth expressions are decided by the sign of a symbolic derivative (interval
arithmetic, or sympy's assumptions). Non-smooth ones (pos, max, min, abs, where)
are split at their kinks into smooth pieces: a continuous function whose pieces
are convex on their intervals and whose slope does not decrease at any kink is
convex. (sympy's own ``is_convex`` is not used: it is wrong at kinks.)
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from .. import functions
from ..atoms import pos, sigmoid, softplus, step
from ..ir import NUM_CLASSES
from .interval import Interval, enclose_on

OO = sympy.oo
NONSMOOTH = functions.NONSMOOTH + (sympy.Piecewise,)


class Undecided(Exception):
    """The engine cannot decide (kinks it cannot locate, a sign it cannot prove)."""


def elementary(e: sympy.Expr) -> sympy.Expr:
    """The language's atoms written with exp/log, so sympy can differentiate, simplify and take limits."""
    return functions.in_exp_log(e)


def _symbolic_powers(e) -> int:
    return sum(1 for node in sympy.preorder_traversal(e) if isinstance(node, sympy.Pow) and not node.exp.is_number)


def simpler(e: sympy.Expr, limit: int = 150) -> sympy.Expr:
    """sympy.simplify(e) when e is small and the result is no worse a proof target, else e. simplify may fold
    a sum of logs into log(b^(polynomial)) (logcombine); simplifying that again expands the power by the
    multinomial theorem (ASL with clip 0.05: minutes and gigabytes), so such results are refused."""
    if e.is_number or e.count_ops() >= limit:
        return e
    s = sympy.simplify(e)
    if _symbolic_powers(s) > _symbolic_powers(e):
        return e
    return s


def is_smooth(e: sympy.Expr) -> bool:
    return not any(e.has(cls) for cls in NONSMOOTH)


@dataclass(frozen=True)
class Piece:
    lo: sympy.Expr   # open interval (lo, hi); -oo / oo allowed
    hi: sympy.Expr
    expr: sympy.Expr  # smooth on the interval

    def interval(self) -> str:
        return f"({sympy.sstr(self.lo)}, {sympy.sstr(self.hi)})"


@dataclass(frozen=True)
class Pieces:
    x: sympy.Symbol
    expr: sympy.Expr
    pieces: tuple
    kinks: tuple

    def describe(self) -> str:
        return "; ".join(f"{sympy.sstr(p.expr)} on {p.interval()}" for p in self.pieces)


def _interior(a, b):
    if a == -OO and b == OO:
        return sympy.Integer(0)
    if a == -OO:
        return b - 1
    if b == OO:
        return a + 1
    return (a + b) / 2


def _switches(atom) -> list:
    """Functions of x whose zeros are where ``atom`` may change branch."""
    if isinstance(atom, (pos, sympy.Abs, step, sympy.Heaviside, sympy.sign)):
        return [atom.args[0]]
    if isinstance(atom, (sympy.Max, sympy.Min)):
        a = atom.args
        return [a[i] - a[j] for i in range(len(a)) for j in range(i + 1, len(a))]
    if isinstance(atom, sympy.Piecewise):
        out = []
        for _, cond in atom.args:
            for rel in cond.atoms(sympy.core.relational.Relational):
                out.append(rel.lhs - rel.rhs)
        return out
    raise Undecided(f"no switching rule for {type(atom).__name__}")


def _branch(atom, x, x0):
    """The smooth expression ``atom`` equals on the open interval containing x0."""
    def sign_at(g):
        v = sympy.N(g.subs(x, x0), 30)
        if not v.is_real:
            raise Undecided(f"{g} is not real at {x0}")
        return 1 if v > 0 else -1 if v < 0 else 0
    if isinstance(atom, pos):
        return atom.args[0] if sign_at(atom.args[0]) > 0 else sympy.S.Zero
    if isinstance(atom, sympy.Abs):
        return atom.args[0] if sign_at(atom.args[0]) >= 0 else -atom.args[0]
    if isinstance(atom, (step, sympy.Heaviside)):
        return sympy.S.One if sign_at(atom.args[0]) > 0 else sympy.S.Zero
    if isinstance(atom, sympy.sign):
        return sympy.Integer(sign_at(atom.args[0]))
    if isinstance(atom, (sympy.Max, sympy.Min)):
        values = [sympy.N(a.subs(x, x0), 30) for a in atom.args]
        pick = max if isinstance(atom, sympy.Max) else min
        return atom.args[values.index(pick(values))]
    if isinstance(atom, sympy.Piecewise):
        for branch, cond in atom.args:
            truth = cond.subs(x, x0)
            if truth not in (sympy.true, sympy.false):
                raise Undecided(f"cannot decide {cond} at {x} = {x0}")
            if truth == sympy.true:
                return branch
        raise Undecided("no branch of the piecewise expression applies")
    raise Undecided(type(atom).__name__)


def _innermost(e):
    """A non-smooth node none of whose arguments (conditions included) is non-smooth."""
    for node in sympy.postorder_traversal(e):
        if isinstance(node, NONSMOOTH):
            inner = node.args if not isinstance(node, sympy.Piecewise) else \
                [a for pair in node.args for a in pair]
            if not any(isinstance(sub, NONSMOOTH) for a in inner for sub in sympy.preorder_traversal(a)):
                return node
    return None


def _roots(g, x, lo, hi) -> list:
    g = sympy.simplify(g)
    if g.is_number:
        if g == 0:
            raise Undecided("a switching function is identically zero")
        return []
    if g.free_symbols - {x}:
        raise Undecided(f"the kink of {g} depends on {sorted(map(str, g.free_symbols - {x}))}")
    sol = sympy.solveset(sympy.Eq(g, 0), x, sympy.Interval.open(lo, hi))
    if isinstance(sol, sympy.FiniteSet) or sol is sympy.S.EmptySet:
        roots = list(sol)
        if not all(r.is_real for r in roots):
            raise Undecided(f"cannot place the roots of {g}")
        return roots
    raise Undecided(f"cannot solve {g} = 0 for the kinks")


def split(expr: sympy.Expr, x: sympy.Symbol, lo=-OO, hi=OO, depth: int = 0) -> list:
    """[(lo, hi, smooth expression)] covering (lo, hi) up to finitely many kinks."""
    if depth > 12:
        raise Undecided("too many nested kinks")
    atom = _innermost(expr)
    if atom is None:
        return [Piece(lo, hi, expr)]
    points = set()
    for g in _switches(atom):
        points.update(_roots(g, x, lo, hi))
    cuts = [lo] + sorted(points, key=lambda r: float(r)) + [hi]
    out = []
    for a, b in zip(cuts, cuts[1:]):
        branch = _branch(atom, x, _interior(a, b))
        out.extend(split(expr.xreplace({atom: branch}), x, a, b, depth + 1))
    return out


def pieces_of(expr: sympy.Expr, x: sympy.Symbol) -> Pieces:
    """The smooth pieces of a one-variable expression and its kinks (raises Undecided)."""
    parts = split(expr, x)
    merged = []
    for p in parts:  # adjacent pieces with the same expression are one piece, unless the value at the cut
        # differs from it (where(m == 0, 5, m^2): a jump at one point is a kink of its own)
        if merged and sympy.simplify(merged[-1].expr - p.expr) == 0 and _same_at(expr, p.expr, x, p.lo):
            merged[-1] = Piece(merged[-1].lo, p.hi, merged[-1].expr)
        else:
            merged.append(p)
    kinks = tuple(p.hi for p in merged[:-1])
    return Pieces(x, expr, tuple(merged), kinks)


def _same_at(expr, piece_expr, x, k) -> bool:
    """True when expr at x = k is shown equal to the (continuous) piece expression there."""
    try:
        return compare(expr.subs(x, k), piece_expr.subs(x, k)) == 0
    except Undecided:
        return False


def compare(a, b) -> int:
    """-1, 0 or 1: sign of a - b for exact real numbers (0 only when sympy shows equality)."""
    d = sympy.simplify(a - b)
    if d == 0:
        return 0
    v = sympy.N(d, 50)
    if not v.is_real:
        raise Undecided(f"{a} - {b} is not real")
    if abs(v) < sympy.Float("1e-40"):
        raise Undecided(f"cannot decide the sign of {d}")
    return 1 if v > 0 else -1


def one_sided(expr_piece, x, k, side: str):
    """The one-sided limit of a smooth piece's expression at an end k of its interval: side "-" for the
    piece left of k (its right end), "+" for the piece right of k. The value at k when it is a finite real
    number (elementary functions are continuous where they are finite and real), else sympy's limit."""
    v = expr_piece.subs(x, k)
    if v.has(sympy.nan, sympy.zoo) or not v.is_finite or v.is_real is not True:
        v = sympy.limit(expr_piece, x, k, side)
    return v


def kink_report(P: Pieces):
    """Per kink: (k, value, left limit, right limit, left slope, right slope); the slopes are the one-sided
    limits of the derivative (equal and finite, with a continuous value, means continuously differentiable)."""
    x = P.x
    out = []
    for left, right in zip(P.pieces, P.pieces[1:]):
        k = left.hi
        value = P.expr.subs(x, k)
        lv, rv = one_sided(left.expr, x, k, "-"), one_sided(right.expr, x, k, "+")
        ls, rs = one_sided(sympy.diff(left.expr, x), x, k, "-"), one_sided(sympy.diff(right.expr, x), x, k, "+")
        out.append((k, value, lv, rv, ls, rs))
    return out


def finite_real(v) -> bool:
    """True when v is shown to be a finite real number."""
    v = sympy.sympify(v)
    return bool(v.is_number and v.is_finite and v.is_real is not False
                and not v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) and sympy.N(v, 30).is_real)


def continuous_at(value, lv, rv) -> bool:
    """A finite value equal to both one-sided limits (sympy shows the equalities)."""
    return all(finite_real(v) for v in (value, lv, rv)) and compare(lv, value) == 0 and compare(rv, value) == 0


def _as_symbol_on(x, lo, hi):
    """x as a symbol with the assumptions its interval allows (for sympy's sign inference)."""
    if lo == -OO and hi == OO:
        return type(x)(x.name, real=True), None  # (an internal symbol stays one)
    if lo == 0 and hi == OO:
        return type(x)(x.name, positive=True), None  # (an internal symbol stays one)
    if lo == -OO and hi == 0:
        return type(x)(x.name, negative=True), None  # (an internal symbol stays one)
    return None, None


def prove_sign(e: sympy.Expr, x: sympy.Symbol, lo, hi, want: str) -> str | None:
    """A proof that e >= 0 (want="nonneg") or e <= 0 ("nonpos") for x in (lo, hi), or None."""
    lo, hi = sympy.sympify(lo), sympy.sympify(hi)
    e = elementary(e)
    forms = [e]
    simple = simpler(e, 120)
    if simple != e:
        forms.append(simple)
    for f in forms:
        if f.is_number:
            v = sympy.N(f, 30)
            ok = v >= 0 if want == "nonneg" else v <= 0
            return f"{sympy.sstr(f)} is a constant {'>=' if want == 'nonneg' else '<='} 0" if ok else None
    for f in forms:
        box = enclose_on(f, x, lo, hi, fixed={NUM_CLASSES: Interval(2, "inf")})
        if (want == "nonneg" and box.lo >= 0) or (want == "nonpos" and box.hi <= 0):
            return (f"interval arithmetic: {sympy.sstr(f)} lies in {box.text()} for {x} in "
                    f"({sympy.sstr(lo)}, {sympy.sstr(hi)})")
    xs, _ = _as_symbol_on(x, lo, hi)
    if xs is not None:
        for f in forms:
            se = f.subs(x, xs)
            fact = se.is_nonnegative if want == "nonneg" else se.is_nonpositive
            if fact is True:
                return f"sympy's assumptions: {sympy.sstr(f)} is {'>=' if want == 'nonneg' else '<='} 0 for real {x}"
    return None


def grid(lo, hi, n: int = 400) -> list[float]:
    """Sample points of (lo, hi): dense near 0 and the ends, wide on infinite sides."""
    import numpy as np
    a = -60.0 if lo == -OO else float(lo)
    b = 60.0 if hi == OO else float(hi)
    base = np.linspace(a, b, n)
    extra = [v for v in (-1e3, -100, -30, -10, -3, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 3, 10, 30, 100, 1e3) if a < v < b]
    pts = sorted(set(float(v) for v in base[1:-1]) | set(extra))
    return pts


def bounded_on(e, x, lo, hi) -> str | None:
    """Why e is bounded for x in (lo, hi): an interval enclosure, or continuity with finite limits at the
    ends (a continuous function with finite limits at both ends of an interval is bounded); else None."""
    lo, hi = sympy.sympify(lo), sympy.sympify(hi)
    e = simpler(elementary(e))
    if e.is_number:
        return f"constant {sympy.sstr(e)}" if e.is_finite else None
    box = enclose_on(e, x, lo, hi)
    if box.finite:
        return f"in {box.text()} by interval arithmetic"
    try:
        if continuous_on(e, x, lo, hi) is None:  # (not sympy's continuous_domain: its solveset can run for
            return None                          # minutes and take gigabytes, e.g. on ASL's clipped piece)
        ends = []
        for end, side in ((lo, "+"), (hi, "-")):
            v = sympy.limit(e, x, end, side) if end.is_finite else sympy.limit(e, x, end)
            if not v.is_finite:
                return None
            ends.append(sympy.sstr(v))
    except Exception:  # noqa: BLE001 - sympy fails in many ways; then nothing is claimed
        return None
    return f"continuous on ({sympy.sstr(lo)}, {sympy.sstr(hi)}) with finite limits {ends[0]} and {ends[1]} at the ends"


_CONTINUOUS = (sympy.exp, sigmoid, softplus, sympy.tanh, sympy.cosh, sympy.sinh, expm1, sympy.Abs, pos, sympy.Max, sympy.Min, sympy.sin,
               sympy.cos, sympy.atan)


def _premises(e: sympy.Expr, x: sympy.Symbol) -> list:
    """[(g, need)]: e is continuous wherever each g satisfies its need ("pos": g > 0, "nonneg": g >= 0,
    "nonzero": g != 0); raises Undecided for a node with no continuity rule."""
    out = []
    for node in sympy.preorder_traversal(e):
        if not node.has(x) or isinstance(node, (sympy.Symbol, sympy.Add, sympy.Mul)) or isinstance(node, _CONTINUOUS):
            continue
        if isinstance(node, sympy.Pow):
            base, ex = node.args
            if ex.has(x):
                out.append((base, "pos"))  # b^g = exp(g log b)
            elif ex.is_Integer:
                if ex < 0:
                    out.append((base, "nonzero"))
            elif ex.is_real and ex.is_number:
                out.append((base, "nonneg" if ex > 0 else "pos"))
            else:
                raise Undecided(f"no continuity rule for the power {node}")
        elif isinstance(node, sympy.log):
            out.append((node.args[0], "pos"))
        elif isinstance(node, log1p):
            out.append((node.args[0] + 1, "pos"))
        else:
            raise Undecided(f"no continuity rule for {type(node).__name__}")
    return out


def _holds(g, need: str, x, lo, hi) -> bool:
    box = enclose_on(g, x, lo, hi)
    if (need == "pos" and box.lo > 0) or (need == "nonneg" and box.lo >= 0) or \
            (need == "nonzero" and (box.lo > 0 or box.hi < 0)):
        return True
    xs, _ = _as_symbol_on(x, lo, hi)
    if xs is None:
        return False
    g = g.subs(x, xs)
    fact = {"pos": g.is_positive, "nonneg": g.is_nonnegative, "nonzero": g.is_nonzero}[need]
    return fact is True


def continuous_on(e: sympy.Expr, x: sympy.Symbol, lo, hi) -> str | None:
    """Why e is continuous on the open interval (lo, hi), or None: a composition of continuous atoms whose
    every domain condition (log argument > 0, denominator != 0, base of a fractional power >= 0) is shown
    by interval arithmetic or sympy's assumptions. Bounded cost: no equation solving."""
    lo, hi = sympy.sympify(lo), sympy.sympify(hi)
    try:
        premises = _premises(e, x)
    except Undecided:
        return None
    for g, need in premises:
        if not _holds(g, need, x, lo, hi):
            return None
    if not premises:
        return "a composition of functions continuous everywhere"
    return "continuous: " + ", ".join(f"{sympy.sstr(g)} {'> 0' if n == 'pos' else '>= 0' if n == 'nonneg' else '!= 0'}"
                                      for g, n in premises) + f" on ({sympy.sstr(lo)}, {sympy.sstr(hi)})"
