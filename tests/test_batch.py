"""The batch kind (AnyLoss): every catalog entry against the hand-written references of
``tests/references.py`` (float64 values and gradients, odd N, grad_output != 1, probabilities and logits,
both backends), weights / ignore_index / sample_weight, the float32 behaviour at L = 73, gradcheck, and
the errors of the language and of the module."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import lossc
from conftest import generator
from references import BATCH_REFERENCES

NAMES = sorted(BATCH_REFERENCES)
BACKENDS = ("torch", "reference")
F64 = dict(rtol=1e-10, atol=1e-12)
GO = 1.7  # the grad_output


def _params(name, alt):
    ref = BATCH_REFERENCES[name]
    return dict(ref.alt_params if alt else ref.params)


def _inputs(n, g, logits=False):
    """Predictions spread over (0, 1), many near 0.5 where the amplifier is steep, and targets
    with both classes."""
    x = torch.randn(n, generator=g, dtype=torch.float64) * (3.0 if logits else 0.08)
    p = x if logits else (0.5 + x).clamp(0.01, 0.99)
    y = (torch.rand(n, generator=g) < 0.4).double()
    y[0], y[1] = 0.0, 1.0
    return p, y


def _reference(name, x, y, w, params, from_logits):
    leaf = x.clone().requires_grad_(True)
    p = torch.sigmoid(leaf) if from_logits else leaf
    value = BATCH_REFERENCES[name].fn(p, y, w, **params)
    (value * GO).backward()
    return value.detach(), leaf.grad


def _lossc(module, x, y, **call):
    leaf = x.clone().requires_grad_(True)
    value = module(leaf, y, **call)
    (value * GO).backward()
    return value.detach(), leaf.grad


def _close(got, expected, rtol=1e-9):
    """Relative to the largest entry: the reference's autograd forms 1 - a by cancellation, so its tiny
    gradients are less accurate than lossc's (which computes 1 - a as sigmoid(-x))."""
    atol = rtol * float(expected.abs().max()) + 1e-15
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)


def test_the_catalog_holds_the_anyloss_entries():
    kinds = {e.name: e.kind for e in lossc.catalog()}
    for name in NAMES:
        assert kinds[name] == "batch"
        assert "Han, Moniz & Chawla, 2024" in next(e.citation for e in lossc.catalog() if e.name == name)


@pytest.mark.parametrize("from_logits", [False, True], ids=["probabilities", "logits"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alt", [False, True], ids=["default", "alt"])
@pytest.mark.parametrize("name", NAMES)
def test_float64_value_and_gradient(name, alt, backend, from_logits):
    params = _params(name, alt)
    x, y = _inputs(37, generator("batch", name, alt, from_logits), logits=from_logits)
    module = lossc.loss(name, backend=backend, from_logits=from_logits, **params)
    value, grad = _lossc(module, x, y)
    exp_value, exp_grad = _reference(name, x, y, torch.ones_like(x), params, from_logits)
    assert value.shape == () and value.dtype == torch.float64 and grad.dtype == torch.float64
    torch.testing.assert_close(value, exp_value, **F64)
    _close(grad, exp_grad)
    assert float(grad.abs().max()) > 1e-3  # the test has teeth: inputs where the amplifier is not flat
    with torch.no_grad():
        torch.testing.assert_close(module(x, y), exp_value, **F64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_weight_ignore_index_and_sample_weight(name, backend):
    params = _params(name, False)
    g = generator("batch-weights", name)
    x, y = _inputs(4 * 9, g)
    x, y = x.reshape(4, 9), y.reshape(4, 9)
    weight = torch.rand(9, generator=g, dtype=torch.float64) + 0.5         # broadcast over the rows
    sw = torch.rand(4, 9, generator=g, dtype=torch.float64) * 2
    drop = torch.rand(4, 9, generator=g) < 0.25
    yt = torch.where(drop, torch.full_like(y, 7.0), y)
    module = lossc.loss(name, backend=backend, weight=weight, ignore_index=7, **params)
    value, grad = _lossc(module, x, yt, sample_weight=sw)
    w = (weight.expand(4, 9) * sw * ~drop).reshape(-1)
    exp_value, exp_grad = _reference(name, x.reshape(-1), y.reshape(-1), w, params, False)
    torch.testing.assert_close(value, exp_value, **F64)
    _close(grad.reshape(-1), exp_grad)
    assert torch.all(grad[drop] == 0)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    x, y = _inputs(11, generator("batch-gradcheck", name))
    module = lossc.loss(name, backend="torch", L=10.0)
    assert torch.autograd.gradcheck(lambda s: module(s, y), (x.requires_grad_(True),), eps=1e-6, atol=1e-7)


# --------------------------------------------------------------------------
# float32 at L = 73: 1 - a must not round to 0 (it is computed as sigmoid(-L (s - 1/2)))
# --------------------------------------------------------------------------

def test_one_minus_amplifier_is_rewritten_to_sigmoid_of_minus():
    from lossc.atoms import sigmoid
    spec = lossc.parse("anyloss_f1")
    bodies = [b.body for b in spec.reductions]
    assert not any(isinstance(a, sympy_add) and 1 in a.args and a.has(sigmoid) for body in bodies
                   for a in _subexpressions(body))
    assert any(body.has(sigmoid(-spec.reductions[0].body.args[-1].args[0])) for body in bodies)


def _subexpressions(e):
    yield e
    for a in e.args:
        yield from _subexpressions(a)


import sympy  # noqa: E402
sympy_add = sympy.Add


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_float32_at_L73_matches_float64_on_saturated_inputs(name, backend):
    # s in {0, 1} and next to them: in float32 a(1) rounds to 1 (L > 33), so 1 - a computed as such is 0
    # and TN, FN lose whole elements; lossc's sigmoid(-x) keeps them
    s = torch.tensor([0.0, 1.0, 1e-6, 1 - 2 ** -20, 0.999, 0.001, 1.0, 0.0, 1.0, 0.0, 0.3, 0.7, 1.0])
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    s64 = s.double()  # the same values
    # the float64 truth: the paper's reference for the value; the fused float64 gradient (autograd's
    # sigmoid backward, s (1 - s), itself loses the ~1e-16 entries where s rounds to 1)
    truth = BATCH_REFERENCES[name].fn(s64, y.double(), torch.ones_like(s64), **_params(name, False))
    _, gtruth = _lossc(lossc.loss(name, backend="torch"), s64, y.double())
    value, grad = _lossc(lossc.loss(name, backend=backend), s, y)
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.all(torch.isfinite(grad))
    torch.testing.assert_close(value.double(), truth, rtol=1e-5, atol=1e-6)
    if backend == "torch":  # every gradient entry to float32 accuracy, even the ~1e-16 ones at s = 0 and 1
        torch.testing.assert_close(grad.double(), gtruth, rtol=2e-5, atol=1e-30)
        assert float(grad.abs().min()) > 0


@pytest.mark.parametrize("power", [1, 2, 3])
def test_small_batch_sums_in_float32(power):
    # predictions at 0 with targets 0: the amplified sums are TP = FN = 0 and FP = a(0) = 1.4e-16 (times a small
    # sample weight, smaller still); the gradient's coefficient -8 TP (FN + FP) / (2 TP + FN + FP)^3 of
    # anyloss_f1()^2 overflowed in float32 (D^-3 = inf) and met TP = 0: NaN. quotient(TP, D) quotient(FN + FP,
    # D) / D is bounded and finite
    text = f"loss g() over batch:\n    return (anyloss_f1())^({power})\n"
    s, y = torch.tensor([0.0, 0.0, 0.01]), torch.tensor([0.0, 0.0, 0.0])
    for sw in (None, torch.tensor([1e-10, 1e-10, 1e-10])):
        call = {} if sw is None else {"sample_weight": sw}
        _, truth = _lossc(lossc.loss(text, backend="torch"), s.double(), y.double(),
                          **({} if sw is None else {"sample_weight": sw.double()}))
        _, grad = _lossc(lossc.loss(text, backend="torch"), s, y, **call)
        assert torch.all(torch.isfinite(grad)), grad
        torch.testing.assert_close(grad.double(), truth, rtol=1e-5, atol=1e-30)
    assert "quotient(" in lossc.generate(text) or power == 1


def test_a_reciprocal_of_anyloss_f1_squared_in_float32():
    """1 / anyloss_f1()^2 at one prediction of sigmoid(-3.42), target 0: the coefficient (2 TP + FN + FP) TP /
    (FN + FP)^3 underflowed in float32 ((1.4e-15)^3) and met TP = 0: NaN. Its numerator factors read a sum D
    lacks, and are divided by D on their own too. The truth: the same in float64."""
    text = "loss g() over batch:\n    return (1 / (anyloss_f1())^(2))\n"
    s, y = torch.tensor([0.0317, 0.0, 0.01]), torch.tensor([0.0, 0.0, 0.0])
    _, truth = _lossc(lossc.loss(text, backend="torch"), s.double(), y.double())
    _, grad = _lossc(lossc.loss(text, backend="torch"), s, y)
    assert torch.all(torch.isfinite(grad)), grad
    torch.testing.assert_close(grad.double(), truth, rtol=1e-5, atol=1e-30)


def _anyloss_f1_by_hand(s, y, L=73.0):
    """anyloss_f1 in float64 from its definition: a = sigmoid(L (s - 1/2)), 1 - 2 TP / (2 TP + FN + FP)."""
    a, one_minus_a = torch.sigmoid(L * (s - 0.5)), torch.sigmoid(-L * (s - 0.5))
    tp, fn, fp = (a * y).sum(), (one_minus_a * y).sum(), (a * (1 - y)).sum()
    return 1 - 2 * tp / (2 * tp + fn + fp)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"))])
@pytest.mark.parametrize("numerator", ["1", "N"])
def test_a_coefficient_of_degree_minus_one_with_a_quartic_denominator_in_float32(backend, numerator):
    """1 / (1 + anyloss_f1()^2) and N / (1 + anyloss_f1()^2) at predictions far from 1/2, targets 0 (float32): the
    coefficient divides by ((2 TP + FN + FP)^2 + (FN + FP)^2)^2, of degree 4 in sums of 1e-16, which underflowed
    and met TP = 0 (NaN, truth 0). A homogeneous coefficient c(B) of degree d is now c(B / S) S^d, S = max |B_k|.
    The truth: autograd of F1 written by hand in float64; the last batch checks an ordinary gradient."""
    text = f"loss g() over batch:\n    return ({numerator} / (1 + (anyloss_f1())^(2)))\n"
    batches = [(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.0]), False),
               (torch.tensor([-3.419675000338822]), torch.tensor([0.0]), True),
               (torch.tensor([0.45, 0.52, 0.6, 0.3]), torch.tensor([1.0, 0.0, 1.0, 0.0]), False)]
    for s, y, logits in batches:
        module = lossc.loss(text, backend=backend, from_logits=logits)
        value, grad = _lossc(module, s, y)
        assert torch.all(torch.isfinite(grad)), grad
        leaf = s.double().requires_grad_(True)
        p = torch.sigmoid(leaf) if logits else leaf
        n = len(s) if numerator == "N" else 1
        want = n / (1 + _anyloss_f1_by_hand(p, y.double()) ** 2)
        (want * GO).backward()
        torch.testing.assert_close(value.double(), want.detach(), rtol=1e-5, atol=0)
        torch.testing.assert_close(grad.double(), leaf.grad, rtol=1e-4, atol=1e-6 * float(leaf.grad.abs().max()))
    assert float(leaf.grad.abs().max()) > 0.1  # (the ordinary batch has a gradient)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"))])
def test_a_fractional_power_of_anyloss_f1_in_float32(backend):
    """((anyloss_f1())^2)^2.5 at one prediction 0, target 0 (float32): sympy's factor left the coefficient's
    sqrt(D / D^3) with D^3 expanded, a cubic of sums of 1e-16 that underflowed (D / 0 = inf, times a tiny
    factor: NaN; truth 0). The bases of fractional powers are factored where they cancel
    (passes/gradient.py, _factored_powers): 1 / |D|. Found by the generator (seed 202612071)."""
    text = "loss g() over batch:\n    return ((anyloss_f1())^(2))^(2.5)\n"
    for s, y in ((torch.tensor([0.0]), torch.tensor([0.0])),
                 (torch.tensor([0.45, 0.52, 0.6, 0.3]), torch.tensor([1.0, 0.0, 1.0, 0.0]))):
        value, grad = _lossc(lossc.loss(text, backend=backend), s, y)
        assert torch.all(torch.isfinite(grad)), grad
        leaf = s.double().requires_grad_(True)
        want = (_anyloss_f1_by_hand(leaf, y.double()) ** 2) ** 2.5
        (want * GO).backward()
        torch.testing.assert_close(value.double(), want.detach(), rtol=1e-5, atol=0)
        torch.testing.assert_close(grad.double(), leaf.grad, rtol=1e-4, atol=1e-6 * float(leaf.grad.abs().max()))
    assert float(leaf.grad.abs().max()) > 0.01  # (the ordinary batch has a gradient)


def test_a_fractional_power_of_a_where_of_the_sums_compiles():
    """(1 + where(2 < g2, sum(s for i), N))^0.5: factoring the base of a fractional power asked sympy for the gcd of
    a Piecewise ("PolynomialError: Piecewise generators do not make sense", not a LossError); such a base is left as
    it is. Found by the generator (seeds 202612070 and 202612080)."""
    text = "loss g(g2 = 0.37) over batch:\n    return ((1 + where(2 < g2, sum(s for i), N)))^(0.5)\n"
    s = torch.tensor([0.2, 0.7, 0.4], dtype=torch.float64)
    value, grad = _lossc(lossc.loss(text, backend="torch"), s, torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))
    assert abs(float(value) - 2.0) < 1e-15 and torch.all(grad == 0)  # (sqrt(1 + N), N = 3: no gradient)


def test_the_naive_float32_form_would_fail():
    # why the rewrite matters: 1 - a(1) is 0 in float32, while a(-) is 1.98e-16
    a1 = torch.sigmoid(torch.tensor(73 * 0.5))
    assert float(1 - a1) == 0.0 and float(torch.sigmoid(torch.tensor(-73 * 0.5))) > 1e-16


# --------------------------------------------------------------------------
# language and module errors
# --------------------------------------------------------------------------

def test_reduction_none_is_refused_and_mean_equals_sum():
    x, y = _inputs(9, generator("batch-reduction"))
    with pytest.raises(lossc.LossError, match="reduction"):
        lossc.loss("anyloss_f1", reduction="none")
    assert float(lossc.loss("anyloss_f1", reduction="sum")(x, y)) == float(lossc.loss("anyloss_f1")(x, y))


def test_inputs_that_are_not_probabilities_are_refused():
    y = torch.tensor([0.0, 1.0])
    with pytest.raises(lossc.LossError, match="from_logits"):
        lossc.loss("anyloss_f1")(torch.tensor([-1.0, 2.0]), y)
    with pytest.raises(lossc.LossError, match="target"):
        lossc.loss("anyloss_f1")(torch.tensor([0.2, 0.3]), torch.tensor([0.0, 2.0]))
    with pytest.raises(lossc.LossError, match="batch_group and from_logits"):
        lossc.loss("bce", from_logits=True)


@pytest.mark.parametrize("text, match", [
    ("loss b() over batch:\n    return s * y\n", "inside a batch sum"),
    ("loss b() over batch:\n    return sum(sum(s for k) * s for i)\n", "nested"),
    ("loss b() over batch:\n    return max(s for i)\n", "sum"),
    ("loss b() over batch:\n    return sum(s * N for i)\n", "cannot use"),
    ("loss b() over batch:\n    learn w = 0.0\n    return sum(s for i)\n", "tasks kind"),
    ("loss b() over binary:\n    return sum(f for i)\n", "row kind"),
    ("loss b() over batch:\n    return sum(s[j] for i)\n", "unknown name j"),
])
def test_language_errors(text, match):
    with pytest.raises(lossc.LossError, match=match):
        lossc.parse(text)


def test_a_hand_written_batch_loss_with_mean_and_constants():
    text = ("loss soft_error(L = 5.0) over batch:\n"
            "    return mean(y[i] * sigmoid(L * (0.5 - s[i])) + (1 - y[i]) * sigmoid(L * (s[i] - 0.5)) for i)"
            " + sum(0.25 for i) / N\n")
    x, y = _inputs(15, generator("batch-hand"))
    value, grad = _lossc(lossc.loss(text, backend="torch"), x, y)
    leaf = x.clone().requires_grad_(True)
    a = torch.sigmoid(5.0 * (leaf - 0.5))
    expected = (y * (1 - a) + (1 - y) * a).mean() + 0.25
    (expected * GO).backward()
    torch.testing.assert_close(value, expected.detach(), **F64)
    torch.testing.assert_close(grad, leaf.grad, **F64)
