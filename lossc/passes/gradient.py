"""The gradient of a normal form, derived by sympy.

Elementwise: ``dL/du = F_u + sum_f F_f * df/du`` over the kind's features (m = t*u, …).

Row: with ``F(z_y, lse, p_t, R_1..R_m)``, ``R_k = op_{j in J_k} h_k`` and weights
``w_k(j)`` (1 for sums, ``exp(h - R)`` for log-sum-exp, the argmax indicator for max),
the gradient for class c is

    [c=y] (D_y F + sum_k F_Rk U_k) + p_c (D_lse F + sum_k F_Rk W_k)
        + sum_k F_Rk [c in J_k] w_k(c) (dh_k/dz + p dh_k/dp)(c)

with ``U_k = sum_j w_k(j) D_y h_k(j)`` and ``W_k = sum_j w_k(j) (D_lse h_k - p_j dh_k/dp)(j)``,
where ``D_y = d/dz_y + p_t d/dp_t`` and ``D_lse = d/dlse - p_t d/dp_t`` (p_t = exp(z_y - lse)).
``U_k`` and ``W_k`` are the extra class reductions of the gradient (``Gradient.aux``);
they vanish, and are dropped, when ``h_k`` does not involve the row's scalars.
"""

from __future__ import annotations

from dataclasses import replace

import sympy
from sympy.logic.boolalg import Boolean

from ..atoms import Abs, computed, quotient
from ..ir import (IS_Y, LSE, NUM_CLASSES, P_J, P_T, U, Z_J, Z_Y, Gradient, LossSpec, Reduction, class_entry, numbered,
                  per_class)
from .stabilize import GRADIENT_RULES, context, rewrite, split_hard_targets


def _d_target(e: sympy.Expr) -> sympy.Expr:
    return sympy.diff(e, Z_Y) + P_T * sympy.diff(e, P_T)


def _d_lse(e: sympy.Expr) -> sympy.Expr:
    return sympy.diff(e, LSE) - P_T * sympy.diff(e, P_T)


class _argmax(sympy.Function):
    """``[h(j) == R]`` for a max reduction ``R = max_j h(j)`` (args R, h): 1 at the classes that attain it.

    Opaque while the gradient is derived and rewritten: ``sympy.simplify`` and the stable rewrites would
    otherwise rearrange the test (``Eq(R1, 3 z[j] - 3 lse)`` into ``Eq(lse, z[j] - R1/3)``), which in
    floating point no longer finds the maximiser the reduction computed (a gradient of 0, or 0/0 once no
    class passes it). ``_indicators`` then writes it as a test of the reduction's own body, exactly as the
    reduction computes it, so that the printers find the argmax again by ``==``. Its derivative is 0."""

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    def _eval_is_nonnegative(self):
        return True


def _weight(r: Reduction) -> sympy.Expr:
    if r.op == "sum":
        return sympy.S.One
    if r.op == "lse":
        return sympy.exp(r.body - r.symbol)
    return _argmax(r.symbol, r.body)


def _indicators(expr: sympy.Expr, reductions) -> sympy.Expr:
    """Every ``_argmax(R, ..)`` as ``Piecewise((1, Eq(body of R, R)), (0, True))``, with R's body as the
    spec computes the reduction (whatever the derivation made of the copy it carried)."""
    bodies = {r.symbol: r.body for r in reductions}
    return expr.replace(lambda n: isinstance(n, _argmax),
                        lambda n: sympy.Piecewise((1, sympy.Eq(bodies[n.args[0]], n.args[0])), (0, True)))


def _nonzero(denominator: sympy.Expr, parameters: set) -> bool:
    """Whether a ratio's denominator is a nonzero number or a nonzero expression of parameters alone: never
    0 in a row. A reduction reused as body = ratio * A with ratio = 1 / (Heaviside(5/2 - z[y]) - 1) (the
    target term of min(z[y], 5/2) - log_softmax(z)[y] - z[j]) was 0 * inf = NaN wherever z[y] < 5/2."""
    return denominator.free_symbols <= parameters and denominator.is_zero is False


def row_gradient(spec: LossSpec) -> Gradient:
    aux: list[Reduction] = []
    parameters = {p.symbol for p in spec.params if p.type == "float"}

    def aux_sum(body: sympy.Expr, exclude: bool) -> sympy.Expr:
        # common factors out (-p[j] (2 p[j] - 2 q[j]) -> -2 p[j] (p[j] - q[j])), and no more: sympy.simplify ran
        # the whole of trigsimp and factoring over algebraic fields on both sides of every relation of a where,
        # minutes for some generated losses (tanh of softmax(z)[y] in a body: 30 s)
        body = sympy.factor_terms(body) if body.count_ops() < 40 else body
        if not per_class(body):  # constant over the classes
            return body * (NUM_CLASSES - 1 if exclude else NUM_CLASSES)
        for a in list(spec.reductions) + aux:  # a multiple of a reduction already computed
            if a.op == "sum" and a.exclude_target == exclude:
                ratio = sympy.cancel(body / a.body)
                if not per_class(ratio) and _nonzero(sympy.fraction(sympy.together(ratio))[1], parameters):
                    return ratio * a.symbol
        symbol = numbered("A", len(aux) + 1)
        aux.append(Reduction(symbol, "sum", body, exclude))
        return symbol

    target = _d_target(spec.expr)
    prob = _d_lse(spec.expr)
    class_terms = sympy.S.Zero
    for r in spec.reductions:
        f_r = sympy.diff(spec.expr, r.symbol)
        if f_r == 0:
            continue
        w = _weight(r)
        if r.op == "max":  # ties share the weight, so the gradient stays a subgradient (sums to that of one)
            w = w / aux_sum(w, r.exclude_target)
        dh_dp = sympy.diff(r.body, P_J)
        target += f_r * aux_sum(w * _d_target(r.body), r.exclude_target)
        prob += f_r * aux_sum(w * (_d_lse(r.body) - P_J * dh_dp), r.exclude_target)
        member = (1 - IS_Y) if r.exclude_target else sympy.S.One
        class_terms += f_r * member * w * (sympy.diff(r.body, Z_J) + P_J * dh_dp)
    expr = IS_Y * target + P_J * prob + class_terms
    return Gradient(expr, tuple(aux))


def elementwise_gradient(spec: LossSpec) -> Gradient:
    """dL/du; a kind's feature (m = t u, r = t - u) that meets u itself in the loss is differentiated as
    its definition, then read back: the product rule keeps d(m + u)/du = (t + 1) as one factor, where the chain rule's
    dL/du + t dL/dm leaves P + t P, which cancels to its rounding at t = -1 (P = 3e6 in float32: 0.25)."""
    both = {f: d for f, d in spec.features if U in spec.expr.free_symbols and f in spec.expr.free_symbols}
    expr = sympy.diff(spec.expr.subs(both), U)  # (a feature with no u beside it: no two paths to cancel)
    for feature, definition in spec.features:
        if feature in both:
            expr = _read_back(expr.subs(definition, feature), feature, definition)
        else:
            expr += sympy.diff(spec.expr, feature) * sympy.diff(definition, U)
    return Gradient(expr)


def _read_back(expr: sympy.Expr, feature: sympy.Symbol, definition: sympy.Expr) -> sympy.Expr:
    """expr with the multiples of a sum-defined feature read back: sympy distributes d(-r^2)/du = 2 (t - u) into
    2 t - 2 u, which subs cannot match, and which, computed beside other terms, rounds at the size of t and u
    (2t - 2u + 0.111 at t = u = -4473: 0.11133 in float32) where 2 r is exact."""
    if not isinstance(definition, sympy.Add):
        return expr
    lead, *others = sympy.Add.make_args(definition)

    def fold(node: sympy.Add) -> sympy.Expr:
        terms = list(node.args)
        for term in list(terms):
            if term not in terms:
                continue
            c = term / lead
            if c.free_symbols & (definition.free_symbols | {feature}):
                continue
            rest = [sympy.expand(c * o) for o in others]
            if all(r in terms for r in rest):
                for r in [term, *rest]:
                    terms.remove(r)
                terms.append(c * feature)
        return sympy.Add(*terms) if len(terms) != len(node.args) else node

    return expr.replace(lambda n: isinstance(n, sympy.Add), fold)


def batch_gradient(spec: LossSpec) -> Gradient:
    """``dL/ds_i = sum_k M_{B_k}(B, N) g_k'(s_i, y_i)``: in u, t, the batch sums B_k and N."""
    expr = sympy.S.Zero
    for b in spec.reductions:
        coefficient = sympy.diff(spec.expr, b.symbol)  # M_{B_k}: simplified, it cancels no large terms
        if coefficient.count_ops() < 60 and not _irrational_constants(coefficient):
            sums = [r.symbol for r in spec.reductions]
            factored = _factored_powers(sympy.factor(sympy.cancel(coefficient)), sums)
            coefficient = _bounded_quotients(factored, sums)
            if _denominator_degree(coefficient, sums) >= 2:
                coefficient = _scaled_homogeneous(factored, sums) or coefficient
        expr += coefficient * sympy.diff(b.body, U)
    return Gradient(expr)


def _factored_powers(coefficient: sympy.Expr, sums: list[sympy.Symbol]) -> sympy.Expr:
    """The coefficient with the base of each fractional power of the sums factored too: sympy's factor leaves
    sqrt(D / D^3) with D^3 expanded, whose cubic of sums of 1e-16 underflows in float32 (D / 0 = inf, and inf
    times a tiny factor is NaN), where it is 1 / |D|."""
    def fractional(n) -> bool:
        return isinstance(n, sympy.Pow) and not n.exp.is_Integer and bool(n.base.free_symbols & set(sums))

    def factored(n):  # (only where the base's numerator and denominator share a factor: it cancels)
        try:
            top, bottom = sympy.fraction(sympy.together(n.base))
            common = sympy.gcd(top, bottom)
        except sympy.PolynomialError:  # (a where of the sums: not a polynomial quotient)
            return n
        return sympy.Pow(sympy.factor(n.base), n.exp) if common.free_symbols & set(sums) else n
    return coefficient.replace(fractional, factored)


def _denominator_degree(coefficient: sympy.Expr, sums: list[sympy.Symbol]) -> int:
    """The total degree in the batch sums of what a coefficient still divides by, its quotients aside."""
    opaque = coefficient.replace(lambda n: isinstance(n, quotient), lambda *a: sympy.Dummy())
    denominator = sympy.fraction(sympy.together(opaque))[1]
    if not denominator.free_symbols & set(sums):
        return 0
    try:
        return sympy.Poly(denominator, *sums).total_degree()
    except sympy.PolynomialError:
        return 0


def _scaled_homogeneous(coefficient: sympy.Expr, sums: list[sympy.Symbol]) -> sympy.Expr | None:
    """A coefficient c(B) = P(B) / Q(B), P and Q homogeneous polynomials in the batch sums it reads, as
    c(B / S) S^(deg P - deg Q) with S = max_k |B_k| over those sums (None when it is not such a quotient).

    Every B / S lies in [-1, 1], one of them at +-1, so P and Q are computed at the size of their
    coefficients, and only S^d carries the scale of the batch: the coefficient of 1 / (1 + anyloss_f1()^2)
    divides by ((2 B1 + B2 + B3)^2 + (B2 + B3)^2)^2, of degree 4 in sums of 1e-16 (a batch of predictions far
    from 1/2), which underflows in float32 and meets a numerator 0 (NaN for a gradient of 0); a
    denominator of D's degree 1 is _bounded_quotients' (it leaves the catalog's coefficients alone). S is 0
    only where every sum the coefficient reads is, where c, whose denominator is homogeneous, is 0/0 too."""
    read = [s for s in sums if s in coefficient.free_symbols]
    numerator, denominator = sympy.fraction(sympy.together(coefficient))
    degrees = []
    for part in (numerator, denominator):
        try:
            poly = sympy.Poly(part, *read)
        except sympy.PolynomialError:
            return None
        if not poly.is_homogeneous:
            return None
        degrees.append(poly.total_degree())
    scale = sympy.Dummy("S", positive=True)
    scaled = coefficient.xreplace({s: quotient(s, scale) for s in read}) * scale ** (degrees[0] - degrees[1])
    return scaled.xreplace({scale: sympy.Max(*[sympy.Abs(s) for s in read])})


def _bounded_quotients(coefficient: sympy.Expr, sums: list[sympy.Symbol]) -> sympy.Expr:
    """A product ``c N1 N2 / D^k`` of polynomials in the batch sums as ``c quotient(N1, D) quotient(N2, D) /
    D^(k-2)``: each numerator factor N of D's degree (a sum of several sums) is divided by D on its own, once
    per power of D left.

    anyloss_f1()^2 has the coefficient -8 B1 (B2 + B3) / (2 B1 + B2 + B3)^3: in float32 the cube of a tiny D
    (a batch of predictions far from 1/2, whose amplified sums are 1e-16) overflows and meets B1 = 0 (NaN
    for a gradient of 0); the ratios are bounded (by 1/2 and 1 for nonnegative sums), 1/D alone is finite.
    1 / anyloss_f1()^2 has (2 B1 + B2 + B3) B1 / (B2 + B3)^3, whose cube underflows alike; a ratio whose
    numerator reads sums D lacks is unbounded only where the coefficient itself is."""
    if not isinstance(coefficient, sympy.Mul):
        return coefficient

    def homogeneous(e: sympy.Expr) -> int | None:
        """The degree of e in the sums when e is a homogeneous polynomial in them, else None."""
        if not e.free_symbols & set(sums):
            return None
        try:
            poly = sympy.Poly(e, *sums)
        except sympy.PolynomialError:
            return None
        return poly.total_degree() if poly.is_homogeneous else None

    powers = [f.as_base_exp() for f in coefficient.args]
    kept = [True] * len(powers)
    out = []
    for i, (d, k) in enumerate(powers):
        degree = homogeneous(d) if k.is_Integer and k < 0 and isinstance(d, sympy.Add) else None
        if degree is None:
            continue
        left = -int(k)
        for j, (n, e) in enumerate(powers):
            if not left:
                break
            if kept[j] and e.is_Integer and e > 0 and homogeneous(n) == degree:
                used = min(int(e), left)
                out.append(quotient(n, d) ** used * n ** (int(e) - used))
                kept[j], left = False, left - used
        if left != -int(k):
            kept[i] = False
            out.append(d ** -left)
    return sympy.Mul(*[f for f, keep in zip(coefficient.args, kept) if keep], *out)


def _irrational_constants(e: sympy.Expr) -> bool:
    """Whether e holds a number that is not rational (sigmoid(237^(5/2) / 10^5), sqrt(2)): factoring then
    works over algebraic extensions and huge integers (minutes for one generated loss)."""
    return any(a.is_number and not a.is_Rational for a in sympy.preorder_traversal(e) if isinstance(a, sympy.Expr))


def composite_gradient(spec: LossSpec) -> Gradient:
    """The derivatives in each task loss L1 … Lk and each learnable, in that order (a sympy Tuple)."""
    bound = dict(spec.bound)
    variables = sorted((s for s in spec.expr.free_symbols if s.name[:1] == "L" and s.name[1:].isdigit()),
                       key=lambda s: int(s.name[1:]))
    for learnable in spec.learnables:
        variables += learnable.symbols(bound)
    return Gradient(sympy.Tuple(*[sympy.diff(spec.expr, v) for v in variables]))


_GRADIENTS = {"row": row_gradient, "elementwise": elementwise_gradient, "batch": batch_gradient,
              "composite": composite_gradient}


class _power(sympy.Function):
    """x^a while the gradient is derived: its derivative is a x^(a-1) x' (and x^a log(x) a'), not sympy's
    x^a (a x'/x + a' log x). For a product x (a power of a catalog loss, (c m^g b)^a) sympy's 1/x is
    distributed over the factors and cancels none of them: 0/0 once a factor underflows, where
    a x^(a-1) x' is a product of finite factors (for a < 1, x^(a-1) at x = 0 is _zero_where_infinite's)."""

    def fdiff(self, argindex=1):
        x, a = self.args
        return a * x ** (a - 1) if argindex == 1 else x ** a * sympy.log(x)


def _derivable(expr: sympy.Expr) -> sympy.Expr:
    """The form sympy differentiates: every abs as lossc's own (``atoms.Abs``: abs of a real value, its
    derivative sign(x) x'), also one that sympy made itself (sqrt(x^2) -> Abs(x)), since sympy.Abs of an
    argument it cannot prove real, such as log1p(m) or sqrt(m), differentiates through re, im and atan2
    (0/0 at the argument's zeros); every power with a non-integer exponent as a ``_power``."""
    return expr.replace(sympy.Abs, Abs).replace(
        lambda n: isinstance(n, sympy.Pow) and not n.exp.is_integer and not n.base.is_number,
        lambda n: _power(*n.args))


def _real(expr: sympy.Expr) -> sympy.Expr:
    """Back from ``_derivable``'s form, with re(x) -> x, im(x) -> 0, conjugate(x) -> x: every value of a loss is
    real (NaN off its domain), but sympy differentiates some functions of an argument it cannot prove real
    through re and im."""
    return expr.replace(_power, lambda x, a: x ** a).replace(sympy.re, lambda a: a) \
        .replace(sympy.im, lambda a: sympy.S.Zero).replace(sympy.conjugate, lambda a: a)


def _signs(spec: LossSpec) -> dict:
    """Parameters -> positive (or nonnegative) stand-ins, from the spec's constraints (``gamma >= 0``,
    ``0 < a``, conjunctions of them): what sympy may assume about an exponent or a base."""
    signs: dict = {}
    for constraint in spec.constraints:
        for atom in sympy.And.make_args(constraint.condition):
            if not isinstance(atom, (sympy.GreaterThan, sympy.StrictGreaterThan,
                                     sympy.LessThan, sympy.StrictLessThan)):
                continue
            big, small = (atom.lhs, atom.rhs) if isinstance(atom, (sympy.GreaterThan, sympy.StrictGreaterThan)) \
                else (atom.rhs, atom.lhs)
            if isinstance(big, sympy.Symbol) and small.is_number and small >= 0:
                strict = small > 0 or isinstance(atom, (sympy.StrictGreaterThan, sympy.StrictLessThan))
                if strict or big not in signs:
                    signs[big] = sympy.Dummy(big.name, positive=True) if strict \
                        else sympy.Dummy(big.name, nonnegative=True)
    return signs


def _zero_where_infinite(expr: sympy.Expr, scalars: set, signs: dict) -> sympy.Expr:
    """x^e for a fractional or parametric e (a number or parameters alone) -> 0 at x = 0 where e < 0.

    The derivative of x^g is g x^(g-1), infinite at x = 0 for g < 1; lossc takes it as 0 there, as it
    takes abs' and pos' at 0 (docs/semantics.md). Otherwise a chain factor that vanishes there
    (pos(p - clip)' = 0 below the clip, d(1 - p_t) = 0 once p_t rounds to 1) or g = 0 itself
    gives inf * 0 = NaN. At x = 0, x^e is then [e == 0] (0^0 = 1, 0^e = 0 for e > 0: unchanged).
    Powers whose exponent is nonnegative, or whose base reads parameters alone or is bounded away from 0
    (``_lower_bound``), stay. A base sympy proves positive may still round to 0 (log(1 + sigmoid(m)) at
    m = -825: 1/(2 sqrt(0)) meets sigmoid'(m) = 0): its test is on ``computed(base)``, which sympy cannot
    prove nonzero. So does every power inside the test of a where (a value, not a derivative)."""
    def guarded(p: sympy.Pow) -> sympy.Expr:
        base, exp = p.args
        at_zero = sympy.S.Zero if exp.is_negative else sympy.Piecewise((1, sympy.Eq(exp, 0)), (0, True))
        tested = computed(base) if base.subs(signs).is_positive else base
        return sympy.Piecewise((p, sympy.Ne(tested, 0)), (at_zero, True))

    def infinite_at_zero(n) -> bool:
        if not isinstance(n, sympy.Pow) or n.exp.is_integer or not n.exp.free_symbols <= scalars:
            return False
        if n.base.free_symbols <= scalars or n.exp.subs(signs).is_nonnegative:
            return False
        return not n.base.subs(signs).is_positive or _lower_bound(n.base, signs) < SMALLEST_NORMAL

    memo: dict = {}

    def walk(n: sympy.Basic) -> sympy.Basic:
        # bottom up, like expr.replace, but not into the tests of a where: there x^e is the value as the
        # loss computes it (inf at 0 is > 3), and sympy's Piecewise runs simplify_logic over a test that
        # gets a Piecewise in it (minutes for a where on pos(..)^gamma)
        if not n.args or isinstance(n, Boolean):
            return n
        if n not in memo:
            args = [walk(a) for a in n.args]
            new = n.func(*args) if args != list(n.args) else n
            memo[n] = guarded(new) if infinite_at_zero(new) else new
        return memo[n]

    return walk(expr)


SMALLEST_NORMAL = 2.0 ** -126  # float32's: a positive value with a lower bound below it may round to 0


def _lower_bound(base: sympy.Expr, signs: dict) -> float:
    """A lower bound of base over every input (interval arithmetic; parameters that the constraints make
    nonnegative from 0): 1 for 1 + r^2/delta^2, 0 for log(1 + sigmoid(m)), -inf when unknown."""
    from ..check.interval import INF, WHOLE, Interval, enclose
    box = {s: Interval(0, INF) if s in signs else WHOLE for s in base.free_symbols}
    return float(enclose(base, box).lo)


def _derivable_spec(spec: LossSpec) -> LossSpec:
    return spec.with_(expr=_derivable(spec.expr),
                      reductions=tuple(replace(r, body=_derivable(r.body)) for r in spec.reductions))


def _each(g: Gradient, fn) -> Gradient:
    """fn applied to the gradient's expression and to the body of each of its reductions."""
    return Gradient(fn(g.expr), tuple(replace(a, body=fn(a.body)) for a in g.aux))


def _as_written(spec: LossSpec) -> Gradient:
    """The chain rule of the form on the spec as it is, back in sympy's own functions."""
    return _each(_GRADIENTS[spec.form](_derivable_spec(spec)), _real)


def gradient(spec: LossSpec) -> LossSpec:
    """Attach the symbolic gradient, rewritten into stable form."""
    ctx = context(spec)
    derived = _each(_as_written(spec), lambda e: rewrite(e, ctx, GRADIENT_RULES))
    derived = Gradient(split_hard_targets(derived.expr, ctx), derived.aux)  # (binary kinds' hard targets)
    bound = dict(spec.bound)
    scalars = {p.symbol for p in spec.params if p.type == "float"} | {
        p.element(i) for p in spec.params if p.type == "vector" for i in range(1, bound[p.size] + 1)}
    scalars |= {class_entry(name, at) for name in spec.class_vectors for at in ("j", "y")}  # (a base of them alone)
    signs = _signs(spec)
    derived = _each(derived, lambda e: _indicators(_zero_where_infinite(e, scalars, signs), ctx.reductions))
    return spec.with_(gradient=derived, reductions=tuple(ctx.reductions))


def written_gradient(spec: LossSpec) -> Gradient:
    """The gradient of the loss as written, with none of the stable rewrites (what ``lossc grad`` shows:
    the user's own functions, ``log(p_t)`` rather than ``logratio(z_y - lse)``). Not for code."""
    return _each(_as_written(spec), lambda e: _indicators(e, spec.reductions))
