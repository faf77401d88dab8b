"""Convexity by composition rules (DCP, as in CVXPY): an atom table and one rule.

Each atom states local facts only: its curvature, the sign of its value, and its
monotonicity in each argument (which may depend on the argument's sign). The one
rule (``_compose``) derives the curvature of an expression from its atom and its
arguments' curvatures, and records the reason. A rule that does not apply gives
``unknown`` — "not proved", never "not convex".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from sympy.codegen.cfunctions import log1p

from .. import functions
from ..ir import IS_Y, LSE, NUM_CLASSES, P_J, P_T, Z_J, Z_Y, Reduction

CONSTANT, AFFINE, CONVEX, CONCAVE, UNKNOWN = "constant", "affine", "convex", "concave", "unknown"
POS, NONNEG, NEG, NONPOS, ZERO, ANY = "positive", "nonnegative", "negative", "nonpositive", "zero", "any sign"
INCR, DECR, NONE = "non-decreasing", "non-increasing", "not monotone"


@dataclass(frozen=True)
class Curvature:
    """What the rule derived for an expression: curvature, sign, and the chain of reasons."""

    curvature: str
    sign: str
    reasons: tuple = field(default=(), compare=False)
    exp_sum: bool = field(default=False, compare=False)  # a sum of c exp(affine), c > 0: its log is convex

    @property
    def is_convex(self) -> bool:
        return self.curvature in (CONSTANT, AFFINE, CONVEX)

    def proof(self) -> str:
        return "\n".join(self.reasons)


def _nonneg(s):
    return s in (POS, NONNEG, ZERO)


def _nonpos(s):
    return s in (NEG, NONPOS, ZERO)


def _by_sign(s):
    """Monotonicity of |x| and x^(2k) in their argument, given the argument's sign."""
    return INCR if _nonneg(s) else DECR if _nonpos(s) else NONE


@dataclass(frozen=True)
class Atom:
    """Local facts of one function: curvature, sign of the value, monotonicity per argument."""

    name: str
    curvature: str                  # convex | concave | affine | unknown (neither)
    sign: object                    # str, or a function of the argument signs
    monotone: object = INCR         # str, or a function (argument sign) -> str
    needs: str | None = None        # a sign the argument must have (domain), e.g. positive for 1/x

    def value_sign(self, signs):
        return self.sign(signs) if callable(self.sign) else self.sign

    def monotonicity(self, sign):
        return self.monotone(sign) if callable(self.monotone) else self.monotone


def _sum_sign(signs):
    if all(_nonneg(s) for s in signs):
        return POS if any(s == POS for s in signs) else NONNEG
    if all(_nonpos(s) for s in signs):
        return NEG if any(s == NEG for s in signs) else NONPOS
    return ANY


def _max_sign(signs):
    if any(s == POS for s in signs):
        return POS
    if any(_nonneg(s) for s in signs):
        return NONNEG
    return _sum_sign(signs)


def _min_sign(signs):
    if any(s == NEG for s in signs):
        return NEG
    if any(_nonpos(s) for s in signs):
        return NONPOS
    return _sum_sign(signs)


_SIGN_RULES = {"max": _max_sign, "min": _min_sign, "argument": lambda signs: signs[0]}
_MONOTONE = {"increasing": INCR, "decreasing": DECR, "even": _by_sign, "none": NONE}


def _atom(f) -> Atom:
    """A function's facts (its entry in lossc/functions.py) in this rule's terms."""
    return Atom(f.name, f.curvature, _SIGN_RULES.get(f.sign, f.sign), _MONOTONE[f.shape], f.needs)


# The atom table: the language's functions (their entries' facts), and the nodes only this rule knows.
# (Affine scaling by a constant and powers are built per node from these facts.)
ATOMS = {
    **{f.name: _atom(f) for f in functions.ENTRIES if f.curvature is not None},
    "sum": Atom("sum", AFFINE, _sum_sign, INCR),
    "logsumexp": Atom("logsumexp", CONVEX, ANY, INCR),
    "square": Atom("x^(2k)", CONVEX, NONNEG, _by_sign),
    "power>1": Atom("x^p (p > 1, x >= 0)", CONVEX, NONNEG, INCR, needs=NONNEG),
    "power<1": Atom("x^p (0 < p < 1, x >= 0)", CONCAVE, NONNEG, INCR, needs=NONNEG),
    "power<0": Atom("x^p (p < 0, x > 0)", CONVEX, POS, DECR, needs=POS),
    "norm2": Atom("sqrt(c + k x^2) (c >= 0, k > 0)", CONVEX, NONNEG, NONE),
}


def constant_sign(c: sympy.Expr) -> str:
    """Sign of a constant (parameters already numbers; C, the number of classes, is >= 2)."""
    if c.has(NUM_CLASSES):
        k = sympy.Symbol("k", integer=True, nonnegative=True)
        c = c.subs(NUM_CLASSES, k + 2)
    if c.is_zero:
        return ZERO
    if c.is_positive:
        return POS
    if c.is_negative:
        return NEG
    if c.is_nonnegative:
        return NONNEG
    if c.is_nonpositive:
        return NONPOS
    if c.is_number:
        v = sympy.N(c, 30)
        if v.is_real:
            return POS if v > 0 else NEG if v < 0 else ZERO
    return ANY


def _mul_signs(a, b):
    if ZERO in (a, b):
        return ZERO
    if ANY in (a, b):
        return ANY
    negative = _nonpos(a) != _nonpos(b)
    strict = a in (POS, NEG) and b in (POS, NEG)
    return (NEG if strict else NONPOS) if negative else (POS if strict else NONNEG)


def _show(e) -> str:
    return sympy.sstr(e)


class Analyzer:
    """Curvature of expressions in the normal form's symbols.

    ``leaves`` maps the variables (and row symbols: z[y], lse(z), reductions) to their
    Curvature; any other symbol is a constant (a target value, the number of classes).
    """

    def __init__(self, leaves: dict):
        self.leaves = dict(leaves)
        self.memo: dict = {}

    def __call__(self, e: sympy.Expr) -> Curvature:
        if e not in self.memo:
            self.memo[e] = self._curvature(e)
        return self.memo[e]

    def _is_constant(self, e) -> bool:
        return not (e.free_symbols & set(self.leaves))

    def _curvature(self, e) -> Curvature:
        if e in self.leaves:
            return self.leaves[e]
        if self._is_constant(e):
            return Curvature(CONSTANT, constant_sign(e))
        if isinstance(e, sympy.Add):
            return self._compose(ATOMS["sum"], e, list(e.args))
        if isinstance(e, sympy.Mul):
            const = [a for a in e.args if self._is_constant(a)]
            rest = [a for a in e.args if not self._is_constant(a)]
            if len(rest) != 1:
                return self._fail(e, "a product of non-constant factors: no composition rule")
            k = sympy.Mul(*const)
            s = constant_sign(k)
            if s == ANY:
                inner = self(rest[0])
                if inner.curvature == AFFINE:  # (k g is affine whatever the sign of k)
                    return Curvature(AFFINE, ANY, inner.reasons + (
                        f"{_show(e)}: affine — an affine term scaled by {_show(k)} (of either sign)",))
                return self._fail(e, f"scaling by {_show(k)} of unknown sign")
            atom = Atom(f"scaling by {_show(k)}", AFFINE, lambda signs, s=s: _mul_signs(s, signs[0]),
                        INCR if _nonneg(s) else DECR)
            return self._compose(atom, e, rest)
        if isinstance(e, sympy.Pow):
            return self._power(e)
        if isinstance(e, (sympy.log, log1p)) and self._exp_sum(e.args[0] + (1 if isinstance(e, log1p) else 0)):
            inner = self(e.args[0])
            return Curvature(CONVEX, ANY, inner.reasons + (
                f"{_show(e)}: convex — the log of a sum of c exp(affine) terms (c > 0) is a logsumexp of affine "
                "functions",))
        entry = functions.of(e)
        if entry is not None and entry.curvature is not None:
            return self._compose(ATOMS[entry.name], e, list(e.args))
        return self._fail(e, f"{type(e).__name__} is not in the atom table (not DCP)")

    def _exp_sum(self, e) -> bool:
        """Whether e is a sum of terms c exp(a) with c > 0 a constant and a affine (a positive constant is
        c exp(0); a class sum of such terms is one: row_leaves marks it)."""
        if e in self.leaves:
            return self.leaves[e].exp_sum
        if self._is_constant(e):
            return constant_sign(e) == POS
        if isinstance(e, sympy.exp):
            return self(e.args[0]).curvature in (AFFINE, CONSTANT)
        if isinstance(e, sympy.Add):
            return all(self._exp_sum(a) for a in e.args)
        if isinstance(e, sympy.Mul):
            rest = [a for a in e.args if not self._is_constant(a)]
            k = sympy.Mul(*[a for a in e.args if self._is_constant(a)])
            return len(rest) == 1 and constant_sign(k) == POS and self._exp_sum(rest[0])
        return False

    def _power(self, e) -> Curvature:
        base, ex = e.args
        if self._is_constant(ex) is False or not self._is_constant(ex):
            if self._is_constant(base) and constant_sign(base) == POS:  # b^x = exp(x log b)
                return self._compose(Atom(f"{_show(base)}^x = exp(x log {_show(base)})", CONVEX, POS, 
                                          INCR if constant_sign(sympy.log(base)) in (POS, NONNEG, ZERO) else DECR),
                                     e, [ex])
            return self._fail(e, "a power with a non-constant exponent")
        if ex == 1:
            return self(base)
        if ex.is_number and ex == sympy.Rational(1, 2):
            inner = self._norm2(base)
            if inner:
                return self._compose(ATOMS["norm2"], e, inner, note="the Euclidean norm of an affine map")
        if not ex.is_number:
            return self._fail(e, f"exponent {_show(ex)} is not a number")
        if ex.is_Integer and int(ex) % 2 == 0 and ex > 0:
            return self._compose(ATOMS["square"], e, [base])
        if ex == sympy.Rational(1, 2):
            return self._compose(ATOMS["sqrt"], e, [base])
        if ex > 1:
            return self._compose(ATOMS["power>1"], e, [base])
        if 0 < ex < 1:
            return self._compose(ATOMS["power<1"], e, [base])
        if ex < 0:
            return self._compose(ATOMS["power<0"], e, [base])
        return self._fail(e, f"no rule for exponent {_show(ex)}")

    def _norm2(self, base) -> list:
        """The affine g_i when base = c + sum k_i g_i^2 with c >= 0, k_i > 0: sqrt(base) is then the
        Euclidean norm of (sqrt(c), sqrt(k_i) g_i), convex in the g_i. Else []."""
        if not isinstance(base, sympy.Add):
            return []
        inner = []
        for term in base.args:
            if self._is_constant(term):
                if not _nonneg(constant_sign(term)):
                    return []
                continue
            k, rest = term.as_independent(*self.leaves)
            if not (isinstance(rest, sympy.Pow) and rest.exp == 2 and constant_sign(k) == POS
                    and self(rest.base).curvature in (AFFINE, CONSTANT)):
                return []
            inner.append(rest.base)
        return inner

    def _fail(self, e, why: str) -> Curvature:
        return Curvature(UNKNOWN, ANY, (f"{_show(e)}: not proved — {why}",))

    def _compose(self, atom: Atom, e, args, note: str = "") -> Curvature:
        """The one rule: f(g_1..g_k) is convex if f is convex and each g_i is affine, or convex
        where f is non-decreasing in it, or concave where f is non-increasing in it (concave: mirrored)."""
        results = [self(a) for a in args]
        reasons = tuple(r for res in results for r in res.reasons)
        signs = [r.sign for r in results]
        sign = atom.value_sign(signs)
        if atom.needs and not all((_nonneg(s) if atom.needs == NONNEG else s == POS) for s in signs):
            return Curvature(UNKNOWN, sign, reasons + (
                f"{_show(e)}: not proved — {atom.name} needs a {atom.needs} argument",))
        if all(r.curvature == CONSTANT for r in results):
            return Curvature(CONSTANT, sign, reasons)

        def fits(target):
            for r, s in zip(results, signs):
                mono = atom.monotonicity(s)
                if r.curvature in (CONSTANT, AFFINE):
                    continue
                if r.curvature == target and mono == INCR:
                    continue
                if r.curvature == {CONVEX: CONCAVE, CONCAVE: CONVEX}[target] and mono == DECR:
                    continue
                return False
            return True

        described = ", ".join(f"{_show(a)} is {r.curvature}" + (f" and {r.sign}" if r.sign != ANY else "")
                              for a, r in zip(args, results) if r.curvature != CONSTANT)
        mono = ", ".join(sorted({atom.monotonicity(s) for s, r in zip(signs, results) if r.curvature != CONSTANT}))
        extra = f" ({note})" if note else ""
        if atom.curvature == AFFINE and all(r.curvature in (CONSTANT, AFFINE) for r in results):
            return Curvature(AFFINE, sign, reasons)
        for target in (CONVEX, CONCAVE):
            if atom.curvature in (AFFINE, target) and fits(target):
                line = (f"{_show(e)}: {target} — {atom.name} is {atom.curvature}{extra}, {mono} in its "
                        f"argument{'s' if len(args) > 1 else ''} here; {described}")
                if atom.curvature == AFFINE and atom.name == "sum":
                    line = f"{_show(e)}: {target} — a sum of {target} and affine terms ({described})"
                return Curvature(target, sign, reasons + (line,))
        return Curvature(UNKNOWN, sign, reasons + (
            f"{_show(e)}: not proved — {atom.name} is {atom.curvature}, {mono}; {described}: no rule applies",))


# ----------------------------------------------------------------------------- leaves of each form

def affine(name: str, why: str, sign: str = ANY) -> Curvature:
    return Curvature(AFFINE, sign, (f"{name}: affine — {why}",))


def row_leaves(reductions: tuple[Reduction, ...]) -> dict:
    """Curvature facts of the row form's symbols, reductions included (derived from their bodies)."""
    leaves = {
        Z_Y: affine("z[y]", "an entry of z"),
        Z_J: affine("z[j]", "an entry of z"),
        LSE: Curvature(CONVEX, ANY, ("lse(z): convex — logsumexp is convex and non-decreasing in each "
                                     "argument, of the affine z",)),
        P_T: Curvature(UNKNOWN, POS, ("p_t = exp(z[y] - lse(z)): neither convex nor concave in z",)),
        P_J: Curvature(UNKNOWN, POS, ("p[j] = exp(z[j] - lse(z)): neither convex nor concave in z",)),
        IS_Y: Curvature(CONSTANT, NONNEG),
    }
    for r in reductions:
        body = Analyzer(leaves)(r.body)
        over = "j != y" if r.exclude_target else "j"
        atom = {"sum": "a sum", "max": "a max", "lse": "a logsumexp"}[r.op]
        if r.op == "sum":
            curv, sign = (body.curvature if body.curvature != CONSTANT else CONSTANT), body.sign
            ok = body.curvature != UNKNOWN
            why = f"{atom} over {over} of {body.curvature} terms"
        elif r.op == "max":
            ok = body.is_convex
            curv, sign = (CONVEX if body.curvature != CONSTANT else CONSTANT), body.sign
            why = f"{atom} (convex, non-decreasing) over {over} of {body.curvature} terms"
        else:
            ok = body.is_convex
            curv, sign = (CONVEX if body.curvature != CONSTANT else CONSTANT), ANY
            why = f"{atom} (convex, non-decreasing) over {over} of {body.curvature} terms"
        if ok:
            exp_sum = r.op == "sum" and Analyzer(leaves)._exp_sum(r.body)
            leaves[r.symbol] = Curvature(curv, sign, body.reasons + (f"{r.describe()}: {curv} — {why}",), exp_sum)
        else:
            leaves[r.symbol] = Curvature(UNKNOWN, sign, body.reasons + (
                f"{r.describe()}: not proved — {atom} of {body.curvature} terms",))
    return leaves


def analyze(expr: sympy.Expr, leaves: dict) -> Curvature:
    """The curvature of ``expr`` with the given leaves; the reasons are the proof (or where it stops)."""
    result = Analyzer(leaves)(expr)
    seen, lines = set(), []
    for line in result.reasons:  # a leaf reached twice is stated once
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return Curvature(result.curvature, result.sign, tuple(lines))
