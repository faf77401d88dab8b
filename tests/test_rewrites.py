"""Each stable rewrite, alone and through the pipeline, plus the finiteness it buys."""

import sympy
import torch

import lossc
from lossc.atoms import expm1, log1p, logratio, sigmoid, softplus
from lossc.ir import LSE, P_J, P_T, U, Z_J, Z_Y
from lossc.passes.stabilize import GRADIENT_RULES, RULES, Context, rewrite

x = sympy.Symbol("x", real=True)
a = sympy.Symbol("a", real=True)


def test_log_of_target_probability():
    assert rewrite(sympy.log(P_T)) == Z_Y - LSE
    assert rewrite(sympy.log(P_J)) == Z_J - LSE


def test_power_of_probability_is_an_exponential():
    assert rewrite(P_T ** a) == sympy.exp(a * (Z_Y - LSE))
    assert rewrite(P_T ** 2) == P_T ** 2


def test_log_one_plus_exp_is_softplus():
    assert rewrite(sympy.log(1 + sympy.exp(x))) == softplus(x)
    assert rewrite(sympy.log(1 + x ** 2)) == log1p(x ** 2)


def test_one_minus_exp_is_expm1():
    assert rewrite(1 - sympy.exp(x)) == -expm1(x)
    assert rewrite(sympy.exp(x) - 1) == expm1(x)
    assert rewrite(1 - P_T) == -expm1(Z_Y - LSE)


def test_log_one_minus_target_probability_is_a_logsumexp_over_the_other_classes():
    ctx = Context()
    out = rewrite(sympy.log(1 - P_T), ctx)
    (r,) = ctx.reductions
    assert (r.op, r.body, r.exclude_target) == ("lse", Z_J, True)
    assert out == r.symbol - LSE


def test_log_sigmoid_is_minus_softplus():
    assert rewrite(sympy.log(sigmoid(U))) == -softplus(-U)
    assert rewrite(sympy.log(1 - sigmoid(U))) == -softplus(U)


def test_power_over_its_base_is_combined():
    base = 1 - x * sigmoid(U)
    assert rewrite(base ** a / base) == base ** (a - 1)


def test_power_times_log_is_finite_at_the_limit():
    d = Z_Y - LSE
    out = rewrite((-expm1(d)) ** (a - 1) * d, rules=GRADIENT_RULES)
    assert out == (-expm1(d)) ** a * logratio(d)
    # and only gradients get it: the loss itself keeps its plain form
    assert rewrite((-expm1(d)) ** (a - 1) * d, rules=RULES) == (-expm1(d)) ** (a - 1) * d


def _grad_at_saturation(spec_or_name, dtype, **params):
    z = torch.zeros(3, 5, dtype=dtype)
    z[:, 2] = torch.tensor([100.0, 1e4, 30.0])
    z = z.requires_grad_()
    y = torch.full((3,), 2)
    out = lossc.loss(spec_or_name, reduction="none", **params)(z, y)
    out.sum().backward()
    return out, z.grad


def test_focal_below_one_stays_finite_as_p_t_goes_to_one():
    for dtype in (torch.float32, torch.bfloat16):
        out, grad = _grad_at_saturation("focal", dtype, gamma=0.5)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
        assert grad.abs().max() < 1e-3


def test_log_one_minus_p_t_stays_finite_and_exact():
    z = torch.tensor([[0.0, 0.0, 40.0], [0.0, -3.0, 20.0]], requires_grad=True)
    y = torch.tensor([2, 2])
    out = lossc.loss("-log(1 - p_t)", over="multiclass", reduction="none")(z, y)
    out.sum().backward()
    exact = torch.logsumexp(z.detach().double(), 1) - torch.logsumexp(z.detach().double()[:, :2], 1)
    assert torch.allclose(out.double(), exact, rtol=1e-6)
    assert torch.isfinite(z.grad).all()


def test_power_times_its_base_splits_hard_binary_targets():
    from lossc.ir import T
    from lossc.passes.stabilize import split_hard_targets
    base = T * sigmoid(-U) + (1 - T) * sigmoid(U)
    dbase = -T * sigmoid(U) * sigmoid(-U) + (1 - T) * sigmoid(U) * sigmoid(-U)  # d base / du
    term = a * base ** (a - 1) * dbase
    out = split_hard_targets(term, Context(binary_target=T))
    hard = base ** a * (-a * T * sigmoid(U) + a * (1 - T) * sigmoid(-U))
    assert out == sympy.Piecewise((hard, sympy.Eq(T * (1 - T), 0)), (term, True))
    for t in (0, 1, 0.3):  # the same function for hard and soft targets
        for u in (-3.0, 0.5, 4.0):
            values = {T: t, U: u, a: 0.5}
            assert abs(float(term.subs(values)) - float(out.subs(values))) < 1e-12
    # not for targets that may be anything (margin, regression), nor where the base is no factor
    assert split_hard_targets(term, Context()) == term
    assert split_hard_targets(base ** (a - 1) * softplus(U), Context(binary_target=T)) == base ** (a - 1) * softplus(U)


def test_sigmoid_focal_below_one_stays_finite_on_well_classified_elements():
    f = torch.tensor([30.0, -30.0, 1e4, -1e4, 0.3], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    out = lossc.loss("sigmoid_focal", gamma=0.5, backend="torch", reduction="none")(f, y)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(f.grad).all()
    assert f.grad[:4].abs().max() < 1e-6


def test_sigmoid_focal_gradient_with_soft_targets():
    """Soft targets in [0, 1] keep the exact derivative (the hard-target form is exact at 0 and 1 only)."""
    g = torch.Generator().manual_seed(5)
    f = (torch.randn(40, generator=g, dtype=torch.float64) * 4).requires_grad_()
    y = torch.rand(40, generator=g, dtype=torch.float64)
    y[:10] = torch.tensor([0.0, 1.0] * 5, dtype=torch.float64)
    for gamma in (0.5, 2.0):
        module = lossc.loss("sigmoid_focal", gamma=gamma, backend="torch", reduction="sum")
        assert torch.autograd.gradcheck(lambda x: module(x, y), (f,), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_abs_of_an_argument_sympy_cannot_prove_real_differentiates_to_sign():
    """sympy's Abs differentiates log1p(m) through re and im (which the triton printer does not know) and
    gives 0/0 at the zeros of log(m); every lossc value is real, so d|f| = sign(f) f'."""
    from lossc.ir import T as t
    from lossc.kinds.margin import M as m
    cases = {"abs(log1p(m))": t * sympy.sign(log1p(m)) / (m + 1), "abs(log(m))": t * sympy.sign(sympy.log(m)) / m,
             # (1/sqrt(m), infinite at m = 0, counts as 0 there: docs/semantics.md)
             "abs(sqrt(m))": t * sympy.sign(sympy.sqrt(m)) / 2
             * sympy.Piecewise((1 / sympy.sqrt(m), sympy.Ne(m, 0)), (0, True))}
    for text, expected in cases.items():
        spec = lossc.parse(text, over="margin")
        assert sympy.simplify(spec.gradient.expr - expected) == 0, spec.gradient.expr
        assert not spec.gradient.expr.has(sympy.re, sympy.im, sympy.atan2)
        for target in ("torch", "all"):
            compile(lossc.generate(spec, target=target), "<generated>", "exec")
    f = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    out = lossc.loss("abs(log(m))", over="margin", backend="torch", reduction="sum")(f, torch.ones(3, dtype=torch.float64))
    out.backward()
    assert torch.isfinite(f.grad).all()  # at m = 1, the kink, sign(0) = 0 rather than 0/0
    torch.testing.assert_close(f.grad, torch.tensor([-2.0, 0.0, 1 / 3], dtype=torch.float64))


def test_power_times_log_reaches_into_a_sum():
    """nfl's aux reduction holds x^(a-1) (g (-d) e^d - x): distributed, each term is finite as x -> 0."""
    d, g = Z_J - LSE, sympy.Symbol("g", positive=True)
    x_ = -expm1(d)
    out = rewrite(x_ ** (a - 1) * (g * (-d) * sympy.exp(d) - x_), rules=GRADIENT_RULES)
    assert out == -g * x_ ** a * logratio(d) * sympy.exp(d) - x_ ** a
    assert not any(isinstance(p, sympy.Pow) and p.exp == a - 1 for p in out.atoms(sympy.Pow))


def test_exponentials_are_combined():
    d = Z_J - LSE
    assert rewrite(x * sympy.exp(d) * sympy.exp(-d), rules=GRADIENT_RULES) == x
    assert rewrite(sympy.exp(x) * sympy.exp(a), rules=GRADIENT_RULES) == sympy.exp(x + a)


def test_nfl_below_one_stays_finite_when_a_class_saturates():
    for dtype in (torch.float32, torch.bfloat16):
        out, grad = _grad_at_saturation("nfl", dtype, gamma=0.5)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
