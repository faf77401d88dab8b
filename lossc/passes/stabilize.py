"""Stable rewrites: a table of sympy replacement rules, applied bottom-up until nothing changes.

Each rule is ``(name, "in -> out", function)``; the function gets a node and the
context and returns its replacement, or None when it does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy

from ..atoms import expm1, log1p, log_softplus, logratio, sigmoid, softplus
from ..ir import INTERNAL, LSE, P_J, P_T, Z_J, Z_Y, Gradient, LossSpec, Reduction, is_internal, numbered

ONE = sympy.S.One


@dataclass
class Context:
    """What a rule may need beyond the node: the spec's class reductions, to add new ones."""

    reductions: list[Reduction] = field(default_factory=list)
    binary_target: sympy.Symbol | None = None  # the target symbol when it is 0 or 1 (binary kinds)

    def intern(self, op: str, body: sympy.Expr, exclude_target: bool) -> sympy.Symbol:
        for r in self.reductions:
            if (r.op, r.body, r.exclude_target) == (op, body, exclude_target):
                return r.symbol
        taken = {int(r.symbol.name[len(INTERNAL) + 1:]) for r in self.reductions if is_internal(r.symbol, "R")}
        symbol = numbered("R", max(taken, default=0) + 1)
        self.reductions.append(Reduction(symbol, op, body, exclude_target))
        return symbol


def _one_minus(e: sympy.Expr):
    """x when e is 1 - x, else None."""
    if isinstance(e, sympy.Add) and len(e.args) == 2 and ONE in e.args:
        other = e.args[0] if e.args[1] == ONE else e.args[1]
        return -other
    return None


def _minus_expm1_arg(e: sympy.Expr):
    """d when e is -expm1(d) (that is, 1 - exp(d)), else None."""
    if isinstance(e, sympy.Mul) and len(e.args) == 2 and sympy.S.NegativeOne in e.args:
        other = e.args[0] if e.args[1] == sympy.S.NegativeOne else e.args[1]
        if isinstance(other, expm1):
            return other.args[0]
    return None


def power_of_probability(e, ctx):
    # p_t^a -> exp(a (z[y] - lse(z))), sigmoid(x)^a -> exp(-a softplus(-x)), softplus(x)^a -> exp(a log_softplus(x))
    # for non-integer a: no 0^(a-1)
    # when the probability underflows, and sqrt(sigmoid(x)) = 1e-100 at x = -460 instead of 0
    if not isinstance(e, sympy.Pow) or e.exp.is_integer:
        return None
    if e.base in (P_T, P_J):
        return sympy.exp(e.exp * ((Z_Y if e.base == P_T else Z_J) - LSE))
    if isinstance(e.base, sigmoid):
        return sympy.exp(-e.exp * softplus(-e.base.args[0]))
    if isinstance(e.base, softplus):  # (softplus(x) = e^x underflows long before softplus(x)^(1/4) does)
        return sympy.exp(e.exp * log_softplus(e.base.args[0]))
    return None


def log_of_probability(e, ctx):
    # log(p_t) -> z[y] - lse(z);  log(p[j]) -> z[j] - lse(z)
    if isinstance(e, sympy.log) and e.args[0] in (P_T, P_J):
        return (Z_Y if e.args[0] == P_T else Z_J) - LSE
    return None


def log_one_minus_target_probability(e, ctx):
    # log(1 - p_t) -> logsumexp(z[j] for j != y) - lse(z)
    if not isinstance(e, sympy.log):
        return None
    x = _one_minus(e.args[0])
    if x == P_T or _minus_expm1_arg(e.args[0]) == Z_Y - LSE:
        return ctx.intern("lse", Z_J, True) - LSE
    return None


def one_minus_probability(e, ctx):
    # 1 - p_t -> -expm1(z[y] - lse(z));  1 - p[j] -> -expm1(z[j] - lse(z))
    x = _one_minus(e)
    if x in (P_T, P_J):
        return -expm1((Z_Y if x == P_T else Z_J) - LSE)
    return None


def one_minus_exp(e, ctx):
    # 1 - exp(x) -> -expm1(x);  exp(x) - 1 -> expm1(x)
    x = _one_minus(e)
    if isinstance(x, sympy.exp):
        return -expm1(x.args[0])
    if isinstance(e, sympy.Add) and len(e.args) == 2 and sympy.S.NegativeOne in e.args:
        other = e.args[0] if e.args[1] == sympy.S.NegativeOne else e.args[1]
        if isinstance(other, sympy.exp):
            return expm1(other.args[0])
    return None


def log_one_plus(e, ctx):
    # log(1 + exp(x)) -> softplus(x);  log(1 + x) -> log1p(x) for x that may be tiny
    if isinstance(e, sympy.log) and isinstance(e.args[0], sympy.Add) and ONE in e.args[0].args:
        rest = e.args[0] - ONE
        if isinstance(rest, sympy.exp):
            return softplus(rest.args[0])
        if rest.is_number:
            return None
        return log1p(rest)
    return None


def log_sigmoid(e, ctx):
    # log(sigmoid(f)) -> -softplus(-f)
    if isinstance(e, sympy.log) and isinstance(e.args[0], sigmoid):
        return -softplus(-e.args[0].args[0])
    return None


def one_minus_sigmoid(e, ctx):
    # 1 - sigmoid(f) -> sigmoid(-f)
    x = _one_minus(e)
    if isinstance(x, sigmoid):
        return sigmoid(-x.args[0])
    return None


def one_minus_target_mixture(e, ctx):
    # 1 - (t a + (1 - t) b) -> t (1 - a) + (1 - t)(1 - b) for the binary target t (an identity for every t),
    # when a or b is a sigmoid: 1 - p_t as torchvision writes it, whose 1 - sigmoid(f) then meets
    # one_minus_sigmoid instead of cancelling (1 - p_t = 0 in float64 from f = 37 on)
    t = ctx.binary_target
    if t is None or not isinstance(e, sympy.Add) or ONE not in e.args:
        return None
    rest = e - ONE
    if t not in rest.free_symbols or not rest.is_polynomial(t) or sympy.diff(rest, t, 2) != 0:
        return None  # (affine in t as a polynomial: a where on t, or sigmoid(t u), is not)
    a, b = -rest.subs(t, 1), -rest.subs(t, 0)
    if t in (a + b).free_symbols or not (isinstance(a, sigmoid) or isinstance(b, sigmoid)):
        return None
    return t * (ONE - a) + (ONE - t) * (ONE - b)


def log_of_exp(e, ctx):
    # log(exp(x)) -> x
    if isinstance(e, sympy.log) and isinstance(e.args[0], sympy.exp):
        return e.args[0].args[0]
    return None


def power_times_log(e, ctx):
    # (1 - p)^a * log(p) -> (1 - p)^(a+1) * logratio(log p): finite as p -> 1 for any a > -1
    # (with log p = d and 1 - p = -expm1(d); sympy writes x^g / x as x^(g-1), which is infinite at x = 0)
    if not isinstance(e, sympy.Mul):
        return None
    for factor in e.args:
        if isinstance(factor, sympy.Pow) and not (factor.exp.is_integer and factor.exp.is_nonnegative):
            d = _minus_expm1_arg(factor.base)
            if d is None:
                continue
            if d in e.args or -d in e.args:
                sign = 1 if d in e.args else -1  # (log p as d, or as -d = lse - z)
                rest = e / (factor * sign * d)
                return sign * rest * factor.base ** (factor.exp + 1) * logratio(d)
            # the log inside a sum (nfl's aux reduction: x^(g-1) (g d e^d - x)): distribute, so that each
            # term meets this rule (or combine_powers) on its own. d may be merged into the sum's terms
            # (a literal g = 1/2 gives (lse - z_j - 2 e^-d expm1(d)) / (2 sqrt(x))): collected first
            log = sympy.Dummy("d")
            for i, f in enumerate(e.args):
                if not isinstance(f, sympy.Add):
                    continue
                collected = f.subs(d, log)
                if any(log in sympy.Mul.make_args(term) for term in sympy.Add.make_args(collected)):
                    product = sympy.Mul(*e.args[:i], collected, *e.args[i + 1:])
                    return sympy.expand_mul(product, deep=False).subs(log, d)
    return None


def combine_powers(e, ctx):
    # x^a * x^b -> x^(a+b), e.g. x^g / x -> x^(g-1) (sympy leaves it split when x is a sum)
    if not isinstance(e, sympy.Mul):
        return None
    exponents: dict = {}
    others = []
    factors = sorted(e.args, key=lambda f: not (f.as_base_exp()[1].is_integer is not True))
    for factor in factors:  # factors with symbolic exponents first: their base is kept
        base, exp = factor.as_base_exp()
        if base.is_number:
            others.append(factor)
        elif -base in exponents and exp.is_integer:  # x^n with (-x) seen: (-1)^n (-x)^n
            others.append(sympy.S.NegativeOne ** exp)
            exponents[-base].append(exp)
        else:
            exponents.setdefault(base, []).append(exp)
    if all(len(v) == 1 for v in exponents.values()):
        return None
    return sympy.Mul(*others, *[b ** sympy.Add(*x) for b, x in exponents.items()])


def _power_times_its_base(e, t):
    """x^(a+1) * (t r1/x1 + (1 - t) r0/x0) for a product e = x^a * r, a not known nonnegative (x^a infinite
    at x = 0), whose r has x as a factor both at t = 0 and at t = 1 (r_k, x_k: r and x at t = k), else None.
    Equal to e for t in {0, 1} only."""
    if not isinstance(e, sympy.Mul):
        return None
    for i, factor in enumerate(e.args):
        if not isinstance(factor, sympy.Pow) or t not in factor.base.free_symbols or factor.exp.is_nonnegative:
            continue
        rest = sympy.Mul(*e.args[:i], *e.args[i + 1:])  # (e / factor leaves x^(1-a) x^(a-1) apart)
        quotients = []
        for value in (0, 1):
            base = factor.base.subs(t, value)
            if base.is_zero is not False and base.is_number:
                break
            quotient = rest.subs(t, value) / base
            if quotient.has(sympy.zoo, sympy.nan):  # (a branch of x that is 0 for this target: 1/0 there)
                break
            # x is a factor of r when r / x divides by none of x's factors (a product x = c m^g b is
            # distributed: (r / x) / b is 0/0 once b underflows, as x^a r is 0 * inf)
            factors = {b for b, _ in (f.as_base_exp() for f in sympy.Mul.make_args(base)) if not b.is_number}
            if any(b in factors and x.is_negative
                   for b, x in (f.as_base_exp() for f in sympy.Mul.make_args(quotient))):
                break  # base is no factor of r for this target
            quotients.append(quotient)
        else:
            return factor.base ** (factor.exp + 1) * (t * quotients[1] + (1 - t) * quotients[0])
    return None


def split_hard_targets(expr: sympy.Expr, ctx: Context) -> sympy.Expr:
    """x^a * r -> where(t (1 - t) == 0, x^(a+1) (t r1/x1 + (1 - t) r0/x0), x^a * r), once, for binary
    targets t (soft targets in [0, 1] keep the plain product, exact for them).

    sigmoid_focal's gradient holds (1 - p_t)^(gamma - 1) * d(1 - p_t)/df, inf * 0 once 1 - p_t underflows
    to 0, which only a hard target does (1 - p_t >= min(t, 1 - t) otherwise); at t = 0 and at t = 1,
    1 - p_t is sigmoid(f) or sigmoid(-f) and divides its derivative sigmoid(f) sigmoid(-f)."""
    t = ctx.binary_target
    if t is None:
        return expr
    hard = sympy.Eq(t * (1 - t), 0)
    return expr.replace(lambda n: _power_times_its_base(n, t) is not None,
                        lambda n: sympy.Piecewise((_power_times_its_base(n, t), hard), (n, True)))


def combine_exps(e, ctx):
    # exp(a) * exp(b) -> exp(a + b): exp(d) exp(-d) is 1, not 0 * inf once exp(d) underflows (nfl);
    # exp(a) * (x + y exp(b)) -> exp(a) x + y exp(a + b), the same inside a sum (sympy.simplify factors
    # exp(d) out of nfl's aux reduction: (g x^g logratio(d) - x^g exp(-d)) exp(d))
    if not isinstance(e, sympy.Mul):
        return None
    exps = [f for f in e.args if isinstance(f, sympy.exp)]
    if len(exps) == 1:
        for i, f in enumerate(e.args):
            if isinstance(f, sympy.Add) and any(isinstance(g, sympy.exp) for term in f.args
                                                for g in sympy.Mul.make_args(term)):
                others = [g for j, g in enumerate(e.args) if j != i and g is not exps[0]]
                return sympy.Mul(*others) * sympy.Add(*[exps[0] * term for term in f.args])
        return None
    if len(exps) < 2:
        return None
    rest = [f for f in e.args if not isinstance(f, sympy.exp)]
    return sympy.Mul(*rest) * sympy.exp(sympy.Add(*[f.args[0] for f in exps]))


def _negative_powers(e: sympy.Expr) -> dict:
    """The bases e divides by anywhere in it, each with its most negative exponent (powers with a negative
    exponent, not of numbers; a where's branch too: Piecewise((3, c), (0, True)) / Piecewise((3 f, c), (y, True))
    divides by y)."""
    out: dict = {}
    for n in sympy.preorder_traversal(e):
        if isinstance(n, sympy.Pow) and n.exp.is_negative and not n.base.is_number:
            out[n.base] = n.exp if n.base not in out or (n.exp - out[n.base]).is_negative else out[n.base]
    return out


def _divides_by_no_more(ratio: dict, allowed: dict) -> bool:
    """Whether each base the ratio divides by was divided by already, to at least that power: 1 / pos(r) where
    M held 1 / sqrt(pos(r)) is a worse pole (at pos(r) = 0 the step that zeroed M's no longer does)."""
    return all(base in allowed and (exponent - allowed[base]).is_nonnegative for base, exponent in ratio.items())


def _same_bases_combined(e: sympy.Expr) -> sympy.Expr:
    """A product with the powers of each base combined: x^(b-1) / x^b is 1 / x (sympy keeps the two when the
    exponents are symbols), so that what it divides by can be seen."""
    if not isinstance(e, sympy.Mul):
        return e
    exponents: dict = {}
    for factor in e.args:
        base, exponent = factor.as_base_exp()
        exponents[base] = exponents.get(base, 0) + exponent
    return sympy.Mul(*[base ** sympy.expand(exponent) for base, exponent in exponents.items()])


def quotient_by_a_term(e, ctx):
    # M / D^k -> (M / T) quotient(T, D) / D^(k-1) for k >= 2, M a multiple of a term T of the sum D: the
    # derivative of N / D puts N D' / D^2 in one product, whose factors sit at D's size: 3 t^3 r^2 |r| /
    # (1 + t^3 r^3)^2 at t r = 7e7 multiplies 1e24 by (1 + P)^-2, which underflows in float32 (P = 3.5e23);
    # |u|^11 / (1 + |u|^8)^2 at u = 5333 is inf * 0. T / D is at most 1 where D's terms share a sign, and near
    # 1 wherever T is what makes D^k extreme. M / T may read |x| as x sign(x) (|r| r^2 = r^3 sign(r)); it
    # divides by nothing that M did not
    from .. import atoms  # (atoms imports nothing of the passes)
    if not isinstance(e, sympy.Mul):
        return None
    for i, factor in enumerate(e.args):
        base, k = factor.as_base_exp()
        if not (isinstance(base, sympy.Add) and k.is_Integer and k <= -2 and base.free_symbols):
            continue
        rest = sympy.Mul(*e.args[:i], *e.args[i + 1:])
        if not rest.free_symbols:
            continue
        allowed = _negative_powers(rest)
        signed = rest.replace(lambda n: isinstance(n, sympy.Abs), lambda n: n.args[0] * sympy.sign(n.args[0]))
        for term in sorted(base.args, key=sympy.count_ops, reverse=True):
            if term.is_number or term.has(atoms.quotient, sympy.Piecewise):  # (a where may be 0)
                continue
            for numerator in (rest, signed):
                ratio = _same_bases_combined(numerator / term)
                if _divides_by_no_more(_negative_powers(ratio), allowed) and not ratio.has(sympy.zoo, sympy.nan):
                    return ratio * atoms.quotient(term, base) * base ** (k + 1)
    return None


def quotient_by_an_atom(e, ctx):
    # M / F^k -> quotient(M, F) / F^(k-1) for k >= 2, F a positive atom without bound (softplus, cosh): the
    # derivative of N / F puts N F' / F^2 in one product, and F^2 overflows long before the quotient does
    # (f / softplus(f^5) at f = 8445 in float32: softplus^2 = 1.9e39, M / F = 5)
    from .. import atoms  # (atoms imports nothing of the passes)
    if not isinstance(e, sympy.Mul):
        return None
    for i, factor in enumerate(e.args):
        base, k = factor.as_base_exp()
        if isinstance(base, (atoms.softplus, sympy.cosh)) and k.is_Integer and k <= -2:
            rest = sympy.Mul(*e.args[:i], *e.args[i + 1:])
            if rest.free_symbols and not rest.has(atoms.quotient):
                return atoms.quotient(rest, base) * base ** (k + 1)
    return None


# (name, what it does, rule): applied in this order at every node, bottom-up, to a fixed point.
RULES = (
    ("log_of_exp", "log(exp(x)) -> x", log_of_exp),
    ("log_of_probability", "log(softmax(z)[y]) -> z[y] - lse(z)", log_of_probability),
    ("power_of_probability", "p_t^a -> exp(a (z[y] - lse(z))); sigmoid(x)^a -> exp(-a softplus(-x))",
     power_of_probability),
    ("log_one_minus_target_probability", "log(1 - p_t) -> logsumexp(z[j] for j != y) - lse(z)",
     log_one_minus_target_probability),
    ("one_minus_probability", "1 - p_t -> -expm1(z[y] - lse(z))", one_minus_probability),
    ("one_minus_exp", "1 - exp(x) -> -expm1(x)", one_minus_exp),
    ("one_minus_target_mixture", "1 - (t a + (1 - t) b) -> t (1 - a) + (1 - t)(1 - b) (binary t, a sigmoid)",
     one_minus_target_mixture),
    ("one_minus_sigmoid", "1 - sigmoid(f) -> sigmoid(-f)", one_minus_sigmoid),
    ("log_sigmoid", "log(sigmoid(f)) -> -softplus(-f)", log_sigmoid),
    ("log_one_plus", "log(1 + exp(x)) -> softplus(x); log(1 + x) -> log1p(x)", log_one_plus),
    ("combine_powers", "x^a / x -> x^(a-1)", combine_powers),
)
# Gradients also get the rule that keeps x^(a-1) * log(1 - x) finite at x = 0.
GRADIENT_RULES = RULES + (
    ("power_times_log", "x^a * log(1 - x) -> x^(a+1) * logratio(..); distributes x^a over a sum holding it",
     power_times_log),
    ("combine_exps", "exp(a) * exp(b) -> exp(a + b)", combine_exps),
    ("quotient_by_a_term", "M / D^k -> (M / T) quotient(T, D) / D^(k-1), M a multiple of a term T of D",
     quotient_by_a_term),
    ("quotient_by_an_atom", "M / F^k -> quotient(M, F) / F^(k-1), F softplus or cosh", quotient_by_an_atom),
)


def context(spec: LossSpec) -> Context:
    """The rewriting context of a spec: its class reductions, and its target symbol if that is 0 or 1."""
    from ..ir import T
    from ..kinds import KINDS
    kind = KINDS.get(spec.kind)
    return Context(list(spec.reductions), T if kind is not None and kind.target == "binary" else None)

MAX_ROUNDS = 20


def rewrite(expr: sympy.Expr, ctx: Context | None = None, rules=RULES) -> sympy.Expr:
    """Apply the rules bottom-up until the expression stops changing."""
    ctx = ctx or Context()

    def visit(node):
        if not node.args or not isinstance(node, sympy.Basic):
            return node
        node = node.func(*[visit(a) for a in node.args]) if node.args else node
        for _, _, rule in rules:
            new = rule(node, ctx)
            if new is not None and new != node:
                return visit(new)
        return node

    for _ in range(MAX_ROUNDS):
        new = visit(expr)
        if new == expr:
            return new
        expr = new
    return expr


def stabilize(spec: LossSpec) -> LossSpec:
    """Rewrite the loss, its class reductions and its gradient (when present) into stable forms."""
    ctx = context(spec)
    expr = rewrite(spec.expr, ctx)
    i = 0
    while i < len(ctx.reductions):  # rules may add reductions, which are rewritten in turn
        r = ctx.reductions[i]
        ctx.reductions[i] = replace(r, body=rewrite(r.body, ctx))  # (a BatchSum stays one)
        i += 1
    gradient = spec.gradient
    if gradient is not None:
        gradient = Gradient(rewrite(gradient.expr, ctx, GRADIENT_RULES),
                            tuple(Reduction(a.symbol, a.op, rewrite(a.body, ctx, GRADIENT_RULES),
                                            a.exclude_target) for a in gradient.aux))
    return spec.with_(expr=expr, reductions=tuple(ctx.reductions), gradient=gradient)
