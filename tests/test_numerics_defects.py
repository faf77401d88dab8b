"""Numeric defects found from outside (issue 12), each against a truth written here by hand: float64
torch formulas derived on paper, or mpmath at 50 digits. Every backend the loss runs on: reference,
torch, triton (under TRITON_INTERPRET=1 on the CPU, set by conftest.py; small shapes).

- the derivative of x^g at x = 0 where it is infinite (g < 1) is 0 (docs/semantics.md): no NaN from
  g = 0, from a chain factor that vanishes there (ASL below its clip), or from nfl's literal 1/2 power
  inside a class reduction;
- the reference backend's softplus has derivative 1/2 at exactly 0;
- the triton printer parenthesises the base of 1 / x (``1 / (1 + exp(-L (s - 1/2)))``).
"""

from __future__ import annotations

import importlib.util
import math

import mpmath
import pytest
import torch
import torch.nn.functional as F

import lossc

HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ["reference", "torch", pytest.param("triton", marks=pytest.mark.skipif(
    not HAS_TRITON, reason="triton is not installed"))]


def _value_and_grad(source, backend, x, t, **params):
    """Sum of the loss and its gradient; triton runs in float32 (its compute dtype) on DEVICE."""
    dtype = torch.float32 if backend == "triton" else x.dtype
    device = DEVICE if backend == "triton" else "cpu"
    module = lossc.loss(source, backend=backend, reduction="sum", **params)
    leaf = x.detach().to(dtype).to(device).requires_grad_(True)
    target = t.to(device) if t.dtype == torch.int64 else t.to(dtype).to(device)
    value = module(leaf, target)
    value.backward()
    return value.detach().double().cpu(), leaf.grad.double().cpu()


def _tolerance(backend):
    return 2e-6 if backend == "triton" else 1e-12


# ---------------------------------------------------------------------------------------------
# (a) torchvision's sigmoid focal loss, written as in its source

TORCHVISION_FOCAL = '''
loss tv_focal(alpha = 0.25, gamma = 2.0) over binary:
    p = sigmoid(f)
    ce = -y * log(p) - (1 - y) * log(1 - p)
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return alpha_t * ce * (1 - p_t)^gamma
'''


def _focal_truth(f, y, alpha, gamma):
    """With x = (2y - 1) f and hard y: L = alpha_t softplus(-x) sigmoid(-x)^gamma, so
    dL/dx = -alpha_t (sigmoid(-x)^(gamma + 1) + gamma softplus(-x) sigmoid(-x)^gamma sigmoid(x))."""
    s = 2 * y - 1
    x = s * f
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    q = torch.sigmoid(-x)
    value = alpha_t * F.softplus(-x) * q ** gamma
    dx = -alpha_t * (q ** (gamma + 1) + gamma * F.softplus(-x) * q ** gamma * torch.sigmoid(x))
    return value.sum(), dx * s


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_torchvision_focal_saturated_has_finite_gradients(backend, gamma):
    """gamma = 0 used to give d/db b^0 = 0 * b^-1 = NaN at 1 - p_t = 0 (f = +-40 in float64, +-20 in
    float32), gamma = 1/2 gave -inf: the truth there is ~ -1e-18 or less, and 1 - p_t cancelled."""
    f = torch.tensor([-40.0, -20.0, -5.0, 0.0, 5.0, 20.0, 40.0] * 2, dtype=torch.float64)
    y = torch.tensor([1.0] * 7 + [0.0] * 7, dtype=torch.float64)
    value, grad = _value_and_grad(TORCHVISION_FOCAL, backend, f, y, gamma=gamma)
    exp_value, exp_grad = _focal_truth(f, y, 0.25, gamma)
    assert torch.isfinite(grad).all(), grad
    # (1 - p_t as written is rewritten into y sigmoid(-f) + (1 - y) sigmoid(f): no cancellation, so the
    # saturated entries are right to the last digits too, not only finite)
    tol = _tolerance(backend)
    torch.testing.assert_close(value, exp_value, rtol=tol, atol=0)
    tiny = 1e-37 if backend == "triton" else 1e-300  # (float32: below its normal range, 0)
    torch.testing.assert_close(grad, exp_grad, rtol=10 * tol, atol=tiny)


# ---------------------------------------------------------------------------------------------
# (b) ASL (asymmetric loss, Ridnik et al. 2021) with a probability clip

ASL = '''
loss asl(gamma_neg = 4.0, gamma_pos = 1.0, clip = 0.05) over binary:
    p = sigmoid(f)
    p_m = pos(p - clip)
    return -y * (1 - p)^gamma_pos * log(p) - (1 - y) * p_m^gamma_neg * log(1 - p_m)
'''


def _asl_truth(f, y, gamma_neg, gamma_pos, clip):
    """By hand: y = 1, the focal form above (alpha_t = 1); y = 0, with m = max(p - clip, 0):
    L = -m^g log(1 - m), dL/df = (m^g / (1 - m) - g m^(g - 1) log(1 - m)) p (1 - p) where m > 0, else 0."""
    p = torch.sigmoid(f)
    m = (p - clip).clamp_min(0)
    q = torch.sigmoid(-f)
    value_pos = F.softplus(-f) * q ** gamma_pos
    grad_pos = -(q ** (gamma_pos + 1) + gamma_pos * F.softplus(-f) * q ** gamma_pos * p)
    active = m > 0
    ms = torch.where(active, m, 0.5)
    value_neg = torch.where(active, -ms ** gamma_neg * torch.log1p(-ms), 0.0)
    slope = ms ** gamma_neg / (1 - ms) - gamma_neg * ms ** (gamma_neg - 1) * torch.log1p(-ms)
    grad_neg = torch.where(active, slope * p * q, 0.0)
    return (y * value_pos + (1 - y) * value_neg).sum(), y * grad_pos + (1 - y) * grad_neg


@pytest.mark.parametrize("gamma_neg", [0.0, 0.5, 4.0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_asl_below_its_clip_has_zero_gradient(backend, gamma_neg):
    """p < clip for negatives: p_m = 0 and the loss is flat there; gamma_neg = 0 or 1/2 gave NaN."""
    f = torch.tensor([-40.0, -5.0, -3.5, -1.0, 0.0, 2.0, 8.0, -6.0, 0.0, 3.0], dtype=torch.float64)
    y = torch.tensor([0.0] * 7 + [1.0] * 3, dtype=torch.float64)
    value, grad = _value_and_grad(ASL, backend, f, y, gamma_neg=gamma_neg)
    exp_value, exp_grad = _asl_truth(f, y, gamma_neg, 1.0, 0.05)
    assert torch.isfinite(grad).all(), grad
    assert (grad[:3] == 0).all()  # sigmoid(-3.5) = 0.029 < clip
    tol = max(_tolerance(backend), 1e-10)
    torch.testing.assert_close(value, exp_value, rtol=tol, atol=tol)
    torch.testing.assert_close(grad, exp_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_derivative_of_a_power_at_zero(backend):
    """d r^g / dr at r = 0: 0 where it is infinite (g < 1) and for g = 0, 1 for g = 1, 0 for g > 1."""
    for g, slope in [(0.0, 0.0), (0.5, 0.0), (1.0, 1.0), (2.5, 0.0)]:
        _, grad = _value_and_grad("r^g", backend, torch.zeros(2, dtype=torch.float64),
                                  torch.zeros(2, dtype=torch.float64), over="regression", g=g)
        torch.testing.assert_close(grad, torch.full((2,), -slope, dtype=torch.float64))  # (r = y - yhat)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_power_in_the_test_of_a_where_is_its_value(backend):
    """where(pos(f)^(-1/2) >= 3, f, 2 f) takes f at f = 0 (inf >= 3): its gradient there is 1. The
    gradient's x^e -> 0 at x = 0 (for the derivative g x^(g-1)) reached into the where's test too,
    0 >= 3: the other branch's 2 (torch, triton)."""
    f = torch.tensor([0.0, 0.01, 1.0], dtype=torch.float64)
    value, grad = _value_and_grad("where(pos(f)^(-0.5) >= 3, f, 2 * f)", backend, f, torch.ones_like(f),
                                  over="binary")
    tol = max(_tolerance(backend), 1e-12)
    torch.testing.assert_close(value, torch.tensor(2.01, dtype=torch.float64), rtol=tol, atol=tol)
    torch.testing.assert_close(grad, torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------
# (c) nfl() + rce(): nfl's default gamma = 1/2 is a literal sqrt inside its class reduction

NFL_RCE = '''
loss nfl_rce() over multiclass:
    return nfl() + rce()
'''
A_RCE = -9.210340371976182


def _nfl_rce_mp(z, y):
    """nfl (gamma = 1/2) + rce at 50 digits, with 1 - p_j summed from the other classes (no cancellation)."""
    e = [mpmath.exp(v) for v in z]
    s = mpmath.fsum(e)
    one_minus = [mpmath.fsum(e[k] for k in range(len(z)) if k != j) / s for j in range(len(z))]
    logp = [v - mpmath.log(s) for v in z]
    den = mpmath.fsum(mpmath.sqrt(one_minus[j]) * logp[j] for j in range(len(z)))
    return mpmath.sqrt(one_minus[y]) * logp[y] / den - A_RCE * one_minus[y]


def _nfl_rce_truth(z, t):
    mpmath.mp.dps = 50
    values, grads = [], torch.zeros_like(z, dtype=torch.float64)
    for i, (row, y) in enumerate(zip(z.double().tolist(), t.tolist())):
        point = [mpmath.mpf(v) for v in row]
        values.append(_nfl_rce_mp(point, y))
        for k in range(len(row)):
            def along(x, k=k):
                moved = list(point)
                moved[k] = x
                return _nfl_rce_mp(moved, y)
            grads[i, k] = float(mpmath.diff(along, point[k]))
    return torch.tensor(float(mpmath.fsum(values)), dtype=torch.float64), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nfl_plus_rce_at_large_logits(backend, dtype):
    """float32 at logits of scale 30: every row's gradient was NaN (0/0 in nfl's aux reduction)."""
    if backend == "triton" and dtype == torch.float64:
        pytest.skip("triton computes in float32")
    g = torch.Generator().manual_seed(12)
    z = (torch.randn(4, 5, generator=g, dtype=torch.float64) * 30).to(dtype)
    t = torch.tensor([0, 1, 2, 3])
    t[0] = int(z[0].argmax())  # a row whose target wins: p_t rounds to 1
    value, grad = _value_and_grad(NFL_RCE, backend, z, t)
    exp_value, exp_grad = _nfl_rce_truth(z, t)
    assert torch.isfinite(grad).all(), grad
    tol = 2e-5 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(value, exp_value, rtol=tol, atol=tol)
    torch.testing.assert_close(grad, exp_grad, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------
# 2. softplus'(0) = 1/2 on the reference backend (a zero-initialised head)

def _truth_at_zero(name, f, y):
    """Plain torch autograd in float64, written from each loss's definition."""
    f = f.detach().clone().requires_grad_(True)
    if name == "bce":
        value = F.binary_cross_entropy_with_logits(f, y, reduction="sum")
    elif name == "logistic":  # margin: log(1 + exp(-y f))
        value = torch.log1p(torch.exp(-y * f)).sum()
    elif name == "sigmoid_focal":  # torchvision's sigmoid_focal_loss, alpha = 0.25, gamma = 2
        p = torch.sigmoid(f)
        ce = F.binary_cross_entropy_with_logits(f, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        value = ((0.25 * y + 0.75 * (1 - y)) * ce * (1 - p_t) ** 2).sum()
    else:  # log_cosh of the residual y - f
        value = torch.log(torch.cosh(y - f)).sum()
    value.backward()
    return f.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["bce", "logistic", "sigmoid_focal", "log_cosh"])
def test_gradient_at_exactly_zero(name, backend):
    y = {"logistic": torch.tensor([1.0, -1.0, 1.0]), "log_cosh": torch.zeros(3)}.get(
        name, torch.tensor([1.0, 0.0, 1.0])).double()
    f = torch.zeros(3, dtype=torch.float64)
    if name == "log_cosh":  # r = 0 at a zero-initialised head, and around it
        f = torch.tensor([0.0, 1e-3, -0.5], dtype=torch.float64)
    _, grad = _value_and_grad(name, backend, f, y)
    atol = 1e-7 if backend == "triton" else 1e-12  # (float32: log_cosh's softplus(2r) - r cancels)
    torch.testing.assert_close(grad, _truth_at_zero(name, f, y), rtol=1e-6, atol=atol)


# ---------------------------------------------------------------------------------------------
# 3. triton batch kernels: 1 / (1 + exp(..)) printed without parentheses around its base

BATCH_LOSSES = {
    # AnyLoss F1 with the amplifier written out (catalog/anyloss_f1.loss uses sigmoid)
    "f1_written_out": ('''
loss f1w(L = 10.0) over batch:
    a = 1 / (1 + exp(-L * (s - 0.5)))
    tp = sum(y * a for i)
    fn = sum(y * (1 - a) for i)
    fp = sum((1 - y) * a for i)
    return 1 - 2 * tp / (2 * tp + fn + fp)
''', lambda s, y, L: (lambda a: 1 - 2 * (y * a).sum() / (2 * (y * a).sum() + (y * (1 - a)).sum()
                                                            + ((1 - y) * a).sum()))(1 / (1 + torch.exp(-L * (s - 0.5))))),
    # a soft accuracy with the reciprocal of a sum in its terms and in its value
    "reciprocal_terms": ('''
loss recip(L = 3.0) over batch:
    a = 1 / (1 + s^2 * L)
    return sum(y * a + (1 - y) / (2 + s) for i) / (1 + sum(a for i))
''', lambda s, y, L: (lambda a: (y * a + (1 - y) / (2 + s)).sum() / (1 + a.sum()))(1 / (1 + s ** 2 * L))),
    # a ratio of two sums whose terms are reciprocals of sums of exponentials
    "ratio_of_sums": ('''
loss ratio(L = 5.0) over batch:
    num = sum(y / (exp(L * s) + exp(-s)) for i)
    return num / (1 + sum(1 / (1 + exp(s)) for i))
''', lambda s, y, L: (y / (torch.exp(L * s) + torch.exp(-s))).sum() / (1 + (1 / (1 + torch.exp(s))).sum())),
}


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("L", [10.0, 73.0])
@pytest.mark.parametrize("case", sorted(BATCH_LOSSES))
def test_triton_batch_kernels_on_hand_written_losses(case, L):
    source, truth = BATCH_LOSSES[case]
    g = torch.Generator().manual_seed(3)
    s = torch.rand(500, generator=g, dtype=torch.float64)
    y = (torch.rand(500, generator=g) < 0.4).double()
    leaf = s.clone().requires_grad_(True)
    exp_value = truth(leaf, y, L)
    exp_value.backward()
    for backend in ("torch", "triton"):
        value, grad = _value_and_grad(source, backend, s, y, L=L)
        tol = 2e-5 if backend == "triton" else 1e-12
        torch.testing.assert_close(value, exp_value.detach(), rtol=tol, atol=tol)
        torch.testing.assert_close(grad, leaf.grad, rtol=tol, atol=tol * float(leaf.grad.abs().max()))



# ---------------------------------------------------------------------------------------------
# 5. z_loss without eps: exactly shift and scale invariant, a documented value at a row of equal logits

def _z_loss_mp(row, y, a, b):
    """softplus(a (b - z'_y)) / a with z'_y = (z_y - mu) / sigma (population std), at 50 digits."""
    n = len(row)
    mu = mpmath.fsum(row) / n
    sigma = mpmath.sqrt(mpmath.fsum((v - mu) ** 2 for v in row) / n)
    zs = (row[y] - mu) / sigma
    return mpmath.log1p(mpmath.exp(a * (b - zs))) / a


def _z_loss_truth(z, t, a=1.0, b=2.0):
    mpmath.mp.dps = 50
    value, grad = mpmath.mpf(0), torch.zeros_like(z, dtype=torch.float64)
    for i, (row, y) in enumerate(zip(z.double().tolist(), t.tolist())):
        point = [mpmath.mpf(v) for v in row]
        value += _z_loss_mp(point, y, a, b)
        for k in range(len(row)):
            def along(x, k=k):
                moved = list(point)
                moved[k] = x
                return _z_loss_mp(moved, y, a, b)
            grad[i, k] = float(mpmath.diff(along, point[k]))
    return torch.tensor(float(value), dtype=torch.float64), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_z_loss_is_shift_and_scale_invariant(backend, dtype):
    """The same standardized logits at std 1e-3 (the default eps = 1e-6 was 40% off there) and 1e3, with
    offsets: the value equals that at std 1, the gradient scales as 1 / std; both against mpmath."""
    if backend == "triton" and dtype == torch.float64:
        pytest.skip("triton computes in float32")
    g = torch.Generator().manual_seed(5)
    base = torch.randn(6, 7, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3, 4, 5])
    unit_value, unit_grad = _z_loss_truth(base, t)
    for scale, shift in [(1e-3, 0.0), (1e-3, 0.5), (1e3, 0.0), (1e3, -2e3), (1.0, 0.0)]:
        # the sum of the logits carries an error of about C eps |offset| (0.5 is 500 std at scale 1e-3)
        tol = (1e-4 if dtype == torch.float32 else 1e-10) * (1 + abs(shift) / scale / 100)
        z = (base * scale + shift).to(dtype)
        value, grad = _value_and_grad("z_loss", backend, z, t)
        exp_value, exp_grad = _z_loss_truth(z, t)  # (of the rounded inputs)
        torch.testing.assert_close(value, exp_value, rtol=tol, atol=tol)
        torch.testing.assert_close(grad * scale, exp_grad * scale, rtol=tol, atol=tol)
        torch.testing.assert_close(value, unit_value, rtol=10 * tol, atol=10 * tol)  # invariance
        torch.testing.assert_close(grad * scale, unit_grad, rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_z_loss_at_a_row_of_equal_logits(backend):
    """sigma = 0: z'_y = 0, L = softplus(a b) / a, dL/dz_k = -sigmoid(a b) ([k = y] - 1/C) (the gradient of
    z_y - mu); rows whose mean does not round back to the value (0.1 three times) included."""
    a, b, C = 0.7, 1.5, 3
    z = torch.tensor([[0.0] * C, [0.1] * C, [-1e4] * C, [7.3] * C], dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 0])
    value, grad = _value_and_grad("z_loss", backend, z, t, a=a, b=b)
    torch.testing.assert_close(value, torch.tensor(4 * math.log1p(math.exp(a * b)) / a, dtype=torch.float64),
                               rtol=1e-6, atol=0)
    one_hot = F.one_hot(t, C).double()
    expected = -(1 / (1 + math.exp(-a * b))) * (one_hot - 1 / C)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# 4. Edge shapes: N = 0, every element ignored, C = 1 (docs/semantics.md, "Edge shapes")

EMPTY_CASES = {  # name: (input, target) with no element; the torch function with the same semantics
    "cross_entropy": (torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64),
                      lambda x, t, r: F.cross_entropy(x, t, reduction=r)),
    "cross_entropy_image": (torch.zeros(2, 3, 0, 4), torch.zeros(2, 0, 4, dtype=torch.int64),
                            lambda x, t, r: F.cross_entropy(x, t, reduction=r)),
    "soft_cross_entropy": (torch.zeros(0, 3), torch.zeros(0, 3),
                           lambda x, t, r: F.cross_entropy(x, t, reduction=r)),
    "bce": (torch.zeros(0, 5), torch.zeros(0, 5),
            lambda x, t, r: F.binary_cross_entropy_with_logits(x, t, reduction=r)),
    "hinge": (torch.zeros(0), torch.zeros(0), lambda x, t, r: F.relu(1 - t * x).sum() if r == "sum"
              else F.relu(1 - t * x).mean() if r == "mean" else F.relu(1 - t * x)),
    "mse": (torch.zeros(0), torch.zeros(0), lambda x, t, r: F.mse_loss(x, t, reduction=r)),
}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(EMPTY_CASES))
def test_an_empty_input_reduces_as_torch_does(case, backend, reduction):
    """'none': an empty tensor of the unreduced shape; 'sum': 0; 'mean': NaN (0 / 0); the gradient empty."""
    x, t, torch_fn = EMPTY_CASES[case]
    name = case.removesuffix("_image")
    device = DEVICE if backend == "triton" else "cpu"
    leaf = x.clone().to(device).requires_grad_(True)
    value = lossc.loss(name, backend=backend, reduction=reduction)(leaf, t.to(device))
    expected = torch_fn(x, t, reduction)
    assert value.shape == expected.shape and value.dtype == x.dtype
    torch.testing.assert_close(value.detach().cpu(), expected, equal_nan=True)
    value.sum().backward()
    assert leaf.grad.shape == x.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_mean_over_ignored_or_zero_weighted_rows_is_nan(backend):
    """Every row ignored, or every kept row weighted 0: the mean's divisor is 0, NaN as F.cross_entropy."""
    device = DEVICE if backend == "triton" else "cpu"
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([-100, -100, -100, -100])
    value = lossc.loss("cross_entropy", backend=backend)(x.to(device), t.to(device))
    assert torch.isnan(F.cross_entropy(x, t)) and torch.isnan(value)
    weight = torch.tensor([0.0, 1.0, 1.0])
    t0 = torch.zeros(4, dtype=torch.int64)
    value = lossc.loss("cross_entropy", weight=weight.to(device), backend=backend)(x.to(device), t0.to(device))
    assert torch.isnan(F.cross_entropy(x, t0, weight=weight)) and torch.isnan(value)
    kept = lossc.loss("cross_entropy", backend=backend)(x.to(device), torch.tensor([0, -100, 2, -100]).to(device))
    torch.testing.assert_close(kept.cpu(), F.cross_entropy(x, torch.tensor([0, -100, 2, -100])))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["anyloss_f1", "anyloss_mcc"])
def test_an_empty_batch_is_refused(name, backend):
    device = DEVICE if backend == "triton" else "cpu"
    module = lossc.loss(name, backend=backend)
    with pytest.raises(lossc.LossInputError, match="the batch is empty"):
        module(torch.zeros(0, device=device), torch.zeros(0, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["cross_entropy", "squentropy", "nce", "nfl", "soft_cross_entropy"])
def test_one_class_is_refused(name, backend):
    """C = 1 made squentropy divide by C - 1 = 0 (ZeroDivisionError) and nce / nfl 0 / 0 (NaN)."""
    device = DEVICE if backend == "triton" else "cpu"
    x = torch.randn(3, 1, device=device)
    t = torch.ones(3, 1, device=device) if name == "soft_cross_entropy" else torch.zeros(3, dtype=torch.int64,
                                                                                          device=device)
    with pytest.raises(lossc.LossInputError, match="C >= 2"):
        lossc.loss(name, backend=backend)(x, t)


# ---------------------------------------------------------------------------------------------
# 6. Functions and powers of a saturated catalog loss (2026-12-02, from the generated-loss runs)

def _sigmoid_focal_mp(f, y, alpha, gamma):
    """sigmoid_focal at hard y and its derivative in f, at 50 digits (nothing under- or overflows): with
    s = 2y - 1, x = s f, q = sigmoid(-x): L = alpha_t q^gamma softplus(-x),
    dL/df = -s alpha_t (q^(gamma + 1) + gamma softplus(-x) q^gamma sigmoid(x))."""
    s = 2 * y - 1
    x = s * mpmath.mpf(f)
    alpha_t = alpha if y == 1 else 1 - alpha
    q = 1 / (1 + mpmath.exp(x))
    softplus = mpmath.log1p(mpmath.exp(-x))
    value = alpha_t * q ** gamma * softplus
    slope = -s * alpha_t * (q ** (gamma + 1) + gamma * softplus * q ** gamma * (1 - q))
    return value, slope


def _elementwise_truth(outer, f, y, alpha, gamma):
    """outer(L) and d outer(L) / df elementwise, as float64 tensors; outer(L) -> (value, derivative) in mpmath."""
    mpmath.mp.dps = 50
    values, grads = [], []
    for fi, yi in zip(f.double().tolist(), y.tolist()):
        L, dL = _sigmoid_focal_mp(fi, int(yi), alpha, gamma)
        v, dv = outer(L)
        values.append(float(v))
        grads.append(float(dv * dL))
    return torch.tensor(values, dtype=torch.float64), torch.tensor(grads, dtype=torch.float64)


def _elementwise(source, backend, dtype, f, y, **params):
    """Per-element values and input gradients (reduction 'none', grad_output 1)."""
    device = DEVICE if backend == "triton" else "cpu"
    over = {} if source.startswith("loss ") else {"over": "binary"}
    module = lossc.loss(source, backend=backend, reduction="none", **over, **params)
    leaf = f.detach().clone().to(dtype).to(device).requires_grad_(True)
    value = module(leaf, y.to(dtype).to(device))
    value.backward(torch.ones_like(value))
    return value.detach().double().cpu(), leaf.grad.double().cpu()


SATURATED_F = [-1e4, -8467.625615800542, -1002.1047605946147, -63.61523135913671, -31.7, -2.5, 0.0, 2.5, 31.7,
               63.61523135913671, 1002.1047605946147, 8467.625615800542, 1e4]
DTYPE_BACKENDS = [(b, d) for b in ("reference", "torch") for d in (torch.float64, torch.float32)] + [
    pytest.param("triton", torch.float32, marks=pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed"))]


def _saturated_inputs():
    f = torch.tensor(SATURATED_F * 2, dtype=torch.float64)
    y = torch.tensor([0.0] * len(SATURATED_F) + [1.0] * len(SATURATED_F), dtype=torch.float64)
    return f, y


def _assert_truth(got, want, dtype, grad_atol=0.0):
    value, grad = got
    exp_value, exp_grad = want
    assert torch.isfinite(value).all() and torch.isfinite(grad).all(), (value, grad)
    # (float32: subnormal intermediates, 1e-42, hold 12 bits)
    rtol, atol = (1e-10, 1e-300) if dtype == torch.float64 else (1e-3, 1e-37)
    torch.testing.assert_close(value, exp_value, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad, exp_grad, rtol=rtol, atol=max(atol, grad_atol))


@pytest.mark.parametrize("backend,dtype", DTYPE_BACKENDS)
def test_abs_of_exp_of_tanh_of_a_saturated_loss(backend, dtype):
    """abs(exp(tanh(sigmoid_focal(0.75)))) at f = 8467.6, y = 0 (sigmoid_focal = 2117): NaN value and
    gradient; the truth is e and 0. sympy's Abs(exp(x)) is exp(re(x)), and with x = tanh(..bce..) that it
    could not prove real (log(1 - sigmoid(f)) before the stable rewrites) re(tanh(x)) became
    sinh(x) cosh(x) / (sinh(x)^2 + 1): inf / inf past x = 710."""
    f, y = _saturated_inputs()

    def outer(L):  # exp(tanh(L)), derivative exp(tanh(L)) sech(L)^2
        return mpmath.exp(mpmath.tanh(L)), mpmath.exp(mpmath.tanh(L)) * mpmath.sech(L) ** 2

    for source, alpha, gamma in [("abs(exp(tanh(sigmoid_focal(0.75))))", 0.75, 2.0),
                                 ("abs(exp(tanh(bce())))", 0.5, 0.0),  # (bce is 2 sigmoid_focal(0.5, 0))
                                 ("abs(tanh(sigmoid_focal(0.75)))", 0.75, 2.0)]:
        got = _elementwise(source, backend, dtype, f, y)
        if source.startswith("abs(tanh"):
            want = _elementwise_truth(lambda L: (mpmath.tanh(L), mpmath.sech(L) ** 2), f.to(dtype), y, alpha, gamma)
        elif gamma == 0.0:
            want = _elementwise_truth(lambda L: outer(2 * L), f.to(dtype), y, alpha, gamma)
            want = (want[0], 2 * want[1])
        else:
            want = _elementwise_truth(outer, f.to(dtype), y, alpha, gamma)
        # tanh' = 1 - tanh^2, as torch's autograd computes it too: an absolute error of an ulp of 1 (its
        # relative error is 1 once tanh rounds to 1, L > 19 in float64), times exp(1) L' (L' <= 1)
        _assert_truth(got, want, dtype, grad_atol=8 * torch.finfo(dtype).eps)


@pytest.mark.parametrize("backend,dtype", DTYPE_BACKENDS)
@pytest.mark.parametrize("source,params,alpha,gamma,a", [
    ("(sigmoid_focal())^(A1)", {"A1": 0.0}, 0.25, 2.0, 0.0),
    ("(sigmoid_focal())^(A1)", {"A1": 0.5}, 0.25, 2.0, 0.5),
    ("(sigmoid_focal(alpha=0.25, gamma=2.5))^(1.5)", {}, 0.25, 2.5, 1.5),
    ("(sigmoid_focal(0.75, 0.5))^(0.5)", {}, 0.75, 0.5, 0.5),
], ids=["A1=0", "A1=0.5", "gamma=2.5,^1.5", "gamma=0.5,^0.5"])
def test_a_power_of_a_saturated_loss(backend, dtype, source, params, alpha, gamma, a):
    """(sigmoid_focal())^A1 at A1 = 0 (f = -63.6, y = 1, float32: split_hard_targets divided by the other
    target's sigmoid(f)^2 softplus(f), 0/0; f = -31.7, y = 0: the loss is subnormal, 0 * 1/L = 0 * inf on the
    reference backend) and
    (sigmoid_focal(alpha=0.25, gamma=2.5))^1.5 at f = 1002, y = 1 (sympy's x^a a x'/x, its 1/x spread over
    the factors of the product: 0/0): NaN gradients; the truth is a L^(a-1) L', 0 for a = 0."""
    f, y = _saturated_inputs()
    if a == 0 and dtype == torch.float32 and backend != "reference":  # not fixed on the fused backends: the
        keep = f.abs() != 31.7  # loss is subnormal there (5e-42) and A1 x^(A1 - 1) x' = 0 * inf (docs/robustness.md)
        f, y = f[keep], y[keep]
    if a == 0.5 and dtype == torch.float32:  # L^(1/2) of an L that underflows in float32 (f = -63.6): 0,
        keep = (f.abs() < 60) | (f.abs() > 1e3)  # not 5.5e-42, an underflow, not a NaN (not this test's)
        f, y = f[keep], y[keep]

    def outer(L):
        if a == 0:
            return mpmath.mpf(1), mpmath.mpf(0)
        return L ** a, a * L ** (a - 1)

    got = _elementwise(f"loss g({', '.join(f'{k} = {v}' for k, v in params.items())}) over binary:\n"
                       f"    return {source}\n", backend, dtype, f, y, **params)
    _assert_truth(got, _elementwise_truth(outer, f.to(dtype), y, alpha, gamma), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_power_of_a_piecewise_loss_where_a_branch_leaves_its_domain(backend):
    """(smooth_hinge())^1.5 and (huber())^1.5: sympy moves the power into the branches of the where,
    (1/2 - m)^(3/2) (m <= 0) and (|r| - 1/2)^(3/2) (|r| >= 1), NaN where that branch is not taken; autograd
    of it (the reference backend) gave 0 * NaN = NaN at m >= 1 and at r = 0. By hand: d L^(3/2) = 3/2 L^(1/2) L'."""
    m = torch.tensor([-1e4, -3.0, 0.0, 0.5, 1.0, 5.0, 1e4], dtype=torch.float64)
    L = torch.where(m <= 0, 0.5 - m, 0.5 * (1 - m).clamp_min(0) ** 2)
    dL = torch.where(m <= 0, -1.0, -(1 - m).clamp_min(0))
    _, grad = _value_and_grad("(smooth_hinge())^(1.5)", backend, m, torch.ones_like(m), over="margin")
    assert torch.isfinite(grad).all(), grad
    torch.testing.assert_close(grad, 1.5 * L.sqrt() * dL, rtol=_tolerance(backend), atol=0)
    r = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 4.0], dtype=torch.float64)  # (r = y - yhat, yhat = 0)
    L = torch.where(r.abs() < 1, 0.5 * r ** 2, r.abs() - 0.5)
    dL = -torch.where(r.abs() < 1, r, r.sign())  # (d/dyhat)
    _, grad = _value_and_grad("(huber())^(1.5)", backend, torch.zeros_like(r), r, over="regression")
    assert torch.isfinite(grad).all(), grad
    torch.testing.assert_close(grad, 1.5 * L.sqrt() * dL, rtol=_tolerance(backend), atol=0)


@pytest.mark.parametrize("backend,dtype", DTYPE_BACKENDS)
def test_a_fractional_power_of_a_positive_base_that_rounds_to_zero(backend, dtype):
    """sqrt(log(1 + sigmoid(m))) at m = -825: the base is positive (sympy proves it, so the guard of x^g at
    0 was left out), but log1p(sigmoid(m)) rounds to 0 and 1/(2 sqrt(0)) met sigmoid'(m) = 0: NaN. The
    truth is sigmoid'(m) / ((1 + sigmoid(m)) 2 sqrt(log1p(sigmoid(m)))) ~ e^(m/2) / 2, by mpmath."""
    m = torch.tensor([-825.69, -200.0, -60.0, -3.0, 0.0, 2.0], dtype=torch.float64)

    def truth(v):
        with mpmath.workdps(50):
            s, d = 1 / (1 + mpmath.exp(-mpmath.mpf(v))), mpmath.exp(-mpmath.mpf(v)) / (1 + mpmath.exp(-mpmath.mpf(v))) ** 2
            return float(d / ((1 + s) * 2 * mpmath.sqrt(mpmath.log1p(s))))

    x = m.to(dtype)
    _, grad = _value_and_grad("sqrt(log(1 + sigmoid(m)))", backend, x, torch.ones_like(x), over="margin")
    assert torch.isfinite(grad).all(), grad
    expected = torch.tensor([truth(float(v)) for v in x.double()], dtype=torch.float64)
    torch.testing.assert_close(grad, expected, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_class_reduction_is_reused_only_through_a_nonzero_ratio(backend):
    """max(clamp(min(z[y], 2.5) - log_softmax(z)[y] - z[j], 0, 2) for j): the gradient's lse term was written as
    the target term's class reduction times 1 / (Heaviside(5/2 - z[y]) - 1), 0 * inf = NaN at every row with
    z[y] < 5/2. The truth: autograd of the loss as written, in float64."""
    g = torch.Generator().manual_seed(1136)
    z = torch.randn(16, 4, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 4, (16,), generator=g)
    z[:4, 0], y[:4] = 4.0, 0  # (rows with z[y] above 5/2 too)
    leaf = z.clone().requires_grad_(True)
    zy = leaf.gather(1, y[:, None])
    body = (torch.minimum(zy, torch.tensor(2.5, dtype=torch.float64)) - F.log_softmax(leaf, 1).gather(1, y[:, None])
            - leaf).clamp(0, 2)
    body.amax(1).sum().backward()
    _, grad = _value_and_grad("max(clamp(((min(z[y], 2.5) - log_softmax(z)[y]) - z[j]), 0, 2) for j)", backend, z, y,
                              over="multiclass")
    assert torch.isfinite(grad).all(), grad
    torch.testing.assert_close(grad, leaf.grad, rtol=_tolerance(backend), atol=_tolerance(backend))


@pytest.mark.parametrize("backend,dtype", DTYPE_BACKENDS)
def test_a_branch_not_taken_whose_derivative_overflows(backend, dtype):
    """(where(r < 2, (mse())^3, r))^2 at r = 7416 in float32: sympy moves the square into the branches, r^12
    for r < 2; autograd of the branch not taken (the reference backend) met 0 * 12 r^11 = 0 * inf = NaN. By
    hand: d/dyhat = -12 r^11 for r < 2, else -2 r."""
    r = torch.tensor([-1.5, 0.5, 1.9, 3.0, 7416.58, 1e5], dtype=torch.float64)
    _, grad = _value_and_grad("(where(r < 2, (mse())^(3), r))^(2)", backend, torch.zeros_like(r).to(dtype),
                              r.to(dtype), over="regression")
    assert torch.isfinite(grad).all(), grad
    r = r.to(dtype).double()
    torch.testing.assert_close(grad, torch.where(r < 2, -12 * r ** 11, -2 * r),
                               rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_class_sum_of_exp_of_log_softmax_stays_shifted(backend):
    """sum(1 + exp(log_softmax(z)[j]) for j) at z = [2060, -8553, -7635] was NaN (value and gradient): the
    class sum expanded exp(z[j] - lse) into exp(z[j]) exp(-lse) and took exp(-lse) out of the sum, whose
    exp(z[j]) overflowed (inf * 0). By hand: C + 1, gradient 0 (the softmax sums to 1)."""
    z = torch.tensor([[2060.855, -8552.97, -7635.31], [0.3, 0.2, -1.0], [80.0, 80.0, -80.0]], dtype=torch.float64)
    y = torch.tensor([2, 0, 1])
    value, grad = _value_and_grad("sum((1 + exp(log_softmax(z)[j])) for j)", backend, z, y, over="multiclass")
    torch.testing.assert_close(value, torch.tensor(12.0, dtype=torch.float64), rtol=_tolerance(backend), atol=0)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=_tolerance(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_multiple_of_r_beside_yhat_stays_a_multiple_of_r(backend):
    """(1 + softplus(yhat)) / (1 + sigmoid(r)) - mse() at yhat = y = -4473.8 in float32: the gradient held
    2 t - 2 u (sympy distributes d(-r^2)/du = 2 r), computed beside 0.111 at the size of t: 0.11133 instead of
    1/9. By hand (r = 0): sigmoid(yhat) / 1.5 + (1 + softplus(yhat)) / 4 / 2.25 - 0 = 1/9."""
    u = torch.tensor([-4473.785, -20.0, 0.0, 3.0], dtype=torch.float32)
    source = "((1 + softplus(yhat)) / (1 + sigmoid(r))) - mse()"
    _, grad = _value_and_grad(source, backend, u, u.clone(), over="regression")
    x = u.double()
    want = torch.sigmoid(x) / 1.5 + (1 + F.softplus(x)) * 0.25 / 2.25
    torch.testing.assert_close(grad, want, rtol=2e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_power_of_a_where_whose_branch_is_zero_at_a_hard_target(backend):
    """(-where(f > 0.5, y, bce()))^g at g = 1, y = 0, f = 3.7 had a NaN gradient on the torch engine (truth 0):
    splitting x^(g-1) x' at the hard targets divided x' by x at t = 0, whose branch f > 0.5 is 0 (1/0 = zoo,
    times the branch's 0). By hand: the loss is -y for f > 0.5 (gradient 0), -bce otherwise."""
    f = torch.tensor([3.7, 0.6, -1.0, 0.2], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    _, grad = _value_and_grad("(-where(f > 0.5, y, bce()))^(g)", backend, f, y, over="binary", g=1.0)
    want = torch.where(f > 0.5, 0.0, -(torch.sigmoid(f) - y))
    assert torch.isfinite(grad).all(), grad
    torch.testing.assert_close(grad, want, rtol=_tolerance(backend), atol=_tolerance(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_max_of_the_softmax_reads_it_before_the_gradient_overwrites_it(backend):
    """max(softmax(z)[j] for j) had a wrong gradient at the target on the torch engine (0.090 instead of -0.060):
    p, the softmax, lives in out (the gradient's buffer), and the target's argmax indicator compared p with
    the max inside _set_target, after the gradient had been written over it. The target's term is now
    computed before. The truth: autograd of the loss as written."""
    g = torch.Generator().manual_seed(467)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (6,), generator=g)
    leaf = z.clone().requires_grad_(True)
    torch.softmax(leaf, 1).amax(1).sum().backward()
    _, grad = _value_and_grad("max(softmax(z)[j] for j)", backend, z, y, over="multiclass")
    torch.testing.assert_close(grad, leaf.grad, rtol=_tolerance(backend), atol=_tolerance(backend))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_an_in_place_logsumexp_of_a_detached_constant_row(backend):
    """logsumexp(detach(where(w >= 1e-3, 1, z[j])) for j) (distribution) failed on the torch engine ("more than
    one element of the written-to tensor refers to a single memory location"): the in-place logsumexp wrote
    into detach of a broadcast view. By hand: 1 + log C, gradient 0."""
    z = torch.tensor([[2.0, 2.0, 1.0], [0.0, -3.0, 5.0]], dtype=torch.float64)
    q = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]], dtype=torch.float64)
    value, grad = _value_and_grad("logsumexp(detach(where(1e-3 <= w, 1, z[j])) for j)", backend, z, q,
                                  over="distribution", w=1.0)
    torch.testing.assert_close(value, torch.tensor(2 * (1 + math.log(3)), dtype=torch.float64))
    torch.testing.assert_close(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_a_class_max_of_a_where_on_c_alone(backend):
    """min(where((1 + C)^(-0.5) > 0.5, where(z[j] > 0, 0.25, 1), 0) for j) failed on the torch engine
    ("Dimension out of range"): the branch 0 of a where on C alone was a 0-d tensor, not one per class (its
    other branch's per-class test had become a temporary the printer did not count as per class). By hand: 0
    for C >= 3; for C = 2 the min over classes of 0.25 (z > 0) or 1."""
    body = "min(where(((1 + C))^((-0.5)) > 0.5, where(z[j] > 0, 0.25, 1), 0) for j)"
    z3 = torch.tensor([[2.4, -2.6, 1.3]], dtype=torch.float64)
    value, grad = _value_and_grad(body, backend, z3, torch.tensor([[0.1, 0.6, 0.3]], dtype=torch.float64),
                                  over="distribution")
    assert float(value) == 0.0 and torch.equal(grad, torch.zeros_like(grad))
    z2 = torch.tensor([[2.4, -2.6], [1.0, 3.0]], dtype=torch.float64)
    value, _ = _value_and_grad(body, backend, z2, torch.tensor([[0.4, 0.6], [0.5, 0.5]], dtype=torch.float64),
                               over="distribution")
    assert float(value) == 0.25 + 0.25


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_a_guard_on_a_per_class_truth_stays_a_truth(backend):
    """mean((C^u + z[j])^(-1.5) for j) (distribution) failed on the torch engine ("where expected condition to be
    a boolean tensor"): the gradient's guard of x^(-5/2) chose between per-class tests by a test of C, and the
    chosen test, a per-class temporary, was broadcast as a float (_per_class). By hand, with autograd."""
    z = torch.tensor([[-0.745, -1.364, 1.389], [0.5, 2.0, -3.0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.25, 0.25]], dtype=torch.float64)
    value, grad = _value_and_grad("mean((((C)^(u) + z[j]))^((-1.5)) for j)", backend, z, q, over="distribution", u=2.5)
    leaf = z.clone().requires_grad_(True)
    want = ((3 ** 2.5 + leaf) ** -1.5).mean(1).sum()
    want.backward()
    torch.testing.assert_close(value, want.detach())
    torch.testing.assert_close(grad, leaf.grad)


FUSED = ["torch", pytest.param("triton", marks=pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed"))]


def _mp_derivative(f, x: float) -> float:
    """df/dx at x in mpmath at 50 digits, rounded to a float."""
    with mpmath.workdps(50):
        return float(mpmath.diff(f, mpmath.mpf(x)))


@pytest.mark.parametrize("backend", FUSED)
def test_a_quotient_by_the_square_of_a_huge_sum_in_float32(backend):
    """t = (yhat^2)^2, t / (1 + t^2) at yhat = -5333 (float32) had a NaN gradient: its term
    -8 |u|^11 sign(u) / (1 + |u|^8)^2 is inf * 0. The numerator is a multiple of the term |u|^8 of the sum, so it
    is now (-8 |u|^3 sign(u)) quotient(|u|^8, 1 + |u|^8) / (1 + |u|^8). The truth: mpmath."""
    source = "loss g(A = 2.0) over regression:\n    t = ((yhat)^(2))^(A)\n    return (t / (1 + (t)^(2)))\n"
    u = torch.tensor([-5333.052747443041, 2e4, -0.5, 3.0], dtype=torch.float32)
    _, grad = _value_and_grad(source, backend, u, u.clone())
    assert torch.all(torch.isfinite(grad)), grad
    want = torch.tensor([_mp_derivative(lambda x: x ** 4 / (1 + x ** 8), float(x)) for x in u.double()],
                        dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=0)


@pytest.mark.parametrize("backend", FUSED)
def test_a_huge_multiplier_of_an_underflowing_reciprocal_square_in_float32(backend):
    """mae_regression() / (1 + ((y r)^1.5)^2) at y r = 7e7 (float32): the gradient's 3 t^3 r^2 |r| / (1 + (t r)^3)^2
    multiplied 1e24 by (1 + P)^-2, which underflows (P = 3.5e23): only the other term was left (-5.7e-24 instead
    of 1.1e-23). Now 3 sign(r) quotient(t^3 r^3, 1 + t^3 r^3) / (1 + t^3 r^3). The truth: mpmath."""
    source = "loss g() over regression:\n    return (mae_regression() / (1 + (((y * r))^(1.5))^(2)))\n"
    u = torch.tensor([-9952.539406373995, 3267.387357625269, 2.0, 0.5], dtype=torch.float32)
    t = torch.tensor([-14744.022609810065, 5925.867336493575, 0.0, 3.0], dtype=torch.float32)
    _, grad = _value_and_grad(source, backend, u, t)
    assert torch.all(torch.isfinite(grad)), grad
    want = []
    for x, y in zip(u.double().tolist(), t.double().tolist()):
        want.append(_mp_derivative(lambda v, y=y: abs(y - v) / (1 + (y * (y - v)) ** 3), x))
    torch.testing.assert_close(grad, torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=0)


@pytest.mark.parametrize("source, z, y", [
    ("softmax(z)[y] * ((log_softmax(z)[y])^(2))^(2.5)", [-4687.0216662488365, -1014.2953205407513, 7521.439416346077], 1),
    ("softmax(z)[y] * (logsumexp(z))^(2.5)", [6458.009989542746, 9697.667393372565, 3504.38932018743], 2),
])
def test_an_exponential_below_the_floor_is_zero_beside_a_huge_factor(source, z, y):
    """The runtime floors exponents at log(smallest normal) + 7 (the CPU's exp is slow below); the floor left
    exp(floor) = 1.3e-35 in float32 where the softmax is e^-8535, and a factor 4.5e19 made it 5.8e-16 (value and
    gradient; the second loss: 6e-26 gradients). An exponential below the floor is 0 now. The truth: p_y = e^-8535
    and e^-6193 times a power below 1e20 (0 in float32); the second row checks the ordinary case by autograd."""
    rows = torch.tensor([z, [0.5, -1.0, 2.0]], dtype=torch.float32)
    target = torch.tensor([y, 1])
    value, grad = _value_and_grad(source, "torch", rows, target, over="multiclass")
    assert torch.all(torch.isfinite(grad)), grad
    leaf = rows[1:].double().requires_grad_(True)
    p = torch.softmax(leaf, 1)[0, 1]
    want = p * (torch.log(p) ** 2) ** 2.5 if "log_softmax" in source else p * torch.logsumexp(leaf, 1)[0] ** 2.5
    want.backward()
    torch.testing.assert_close(value, want.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(grad[0], torch.zeros(3, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(grad[1], leaf.grad[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", FUSED)
def test_a_quotient_by_a_where_does_not_divide_by_its_branch(backend):
    """r / (1 + where(r < 2, r * r, r)) at r = 0: the gradient's r (2 r) / D^2 is a multiple of D's term, the
    where, only through a division by that where, 0 at r = 0 (NaN); quotient_by_a_term leaves a term that
    is a where alone. By hand: -(1 - r^2) / (1 + r^2)^2 below 2, -1 / (1 + r)^2 from 2 on (dr/du = -1)."""
    u = torch.tensor([0.0, 1.0, -3.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 4.0, -0.5, 0.25], dtype=torch.float64)
    _, grad = _value_and_grad("r / (1 + where(r < 2, r * r, r))", backend, u, t, over="regression")
    r = t - u
    want = torch.where(r < 2, -(1 - r * r) / (1 + r * r) ** 2, -1 / (1 + r) ** 2)
    torch.testing.assert_close(grad, want, rtol=_tolerance(backend), atol=_tolerance(backend))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_a_quotient_by_a_term_with_a_parameter_exponent_at_zero(dtype):
    """r / (1 + pseudo_huber()^b) at r = 0 (bf16 rounds yhat = 7203 and y = 7205 to one value): the gradient rule
    M / D^k -> (M / T) quotient(T, D) / D^(k-1) took M / T for a product dividing by nothing new because sympy
    kept ph^(b-1) / ph^b uncombined, which is 1 / ph: NaN at ph = 0 (truth -1). The powers of one base are
    combined before that test now (passes/stabilize.py, _same_bases_combined); t / (1 + t^2), t = |u|^(4 A),
    still gets the rule (its M / T is |u|^(2 A - 1)), and is finite at u = 0 too. Found by the generator (seed
    202612080)."""
    source = "loss g(b = 2.0) over regression:\n    return (r / (1 + (pseudo_huber())^(b)))\n"
    x = torch.tensor([0.0, 1e-3, 2.0, -5333.0], dtype=dtype, requires_grad=True)
    value = lossc.loss(source, backend="torch", reduction="sum")(x, torch.zeros_like(x))
    (grad,) = torch.autograd.grad(value, x)
    xd = x.detach().double().requires_grad_(True)
    r = -xd
    want = (r / (1 + (torch.sqrt(1 + r ** 2) - 1) ** 2)).sum()
    (want_grad,) = torch.autograd.grad(want, xd)
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(grad.double(), want_grad, rtol=tol, atol=tol)
    power = "loss h(A = 2.0) over regression:\n    t = ((yhat)^(2))^(A)\n    return (t / (1 + (t)^(2)))\n"
    value = lossc.loss(power, backend="torch", reduction="sum")(x, torch.zeros_like(x))
    (grad,) = torch.autograd.grad(value, x)
    t = xd.detach().requires_grad_(True)
    want = ((t ** 2) ** 2 / (1 + (t ** 2) ** 4)).sum()
    (want_grad,) = torch.autograd.grad(want, t)
    torch.testing.assert_close(grad.double(), want_grad, rtol=max(tol, 1e-6), atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_quotient_by_a_term_keeps_the_pole_it_had(dtype):
    """1 / (2 + sqrt(pos(r))) at r < 0: the rule M / D^2 -> (M / T) quotient(T, D) / D with T = sqrt(pos(r))
    divided by pos(r) where M divided by its square root only, and the step that zeroed M's 1 / sqrt(pos(r))
    there did not reach the new pole: NaN (truth 0). A ratio now divides by no base to a higher power than M did
    (passes/stabilize.py, _divides_by_no_more). Found by the generator (seed 202612080)."""
    source = "loss g() over regression:\n    return (1 / (2 + sqrt(pos(r))))\n"
    yhat = torch.tensor([-0.5, 0.5, 3.0, -7.0], dtype=dtype, requires_grad=True)
    y = torch.tensor([-3.1, 1.5, 5.0, -9.0], dtype=dtype)  # (r = -2.6, 1, 2, -2)
    value = lossc.loss(source, backend="torch", reduction="sum")(yhat, y)
    (grad,) = torch.autograd.grad(value, yhat)
    r = (y.double() - yhat.detach().double()).requires_grad_(True)  # (r = y - yhat)
    (dr,) = torch.autograd.grad((1 / (2 + torch.sqrt(torch.relu(r)))).sum(), r)
    torch.testing.assert_close(grad.double(), -dr, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_quotient_by_a_squared_softplus(dtype):
    """f / softplus((f^2)^x), x = 2.5, at f = 8445 (float32): the gradient's f sigmoid(P) P' / softplus(P)^2 squared
    softplus(P) = 4e19 past float32's largest number (gradient 2.3e-20, truth -9.3e-20). M / F^2 with F softplus
    or cosh is quotient(M, F) / F now (passes/stabilize.py, quotient_by_an_atom). Found by the generator (seed
    202612070)."""
    source = "loss g(x = 2.5) over binary:\n    return (f / softplus(((f)^(2))^(x)))\n"
    f = torch.tensor([8445.494054389792, 1.5, -0.7, 0.0], dtype=dtype, requires_grad=True)
    value = lossc.loss(source, backend="torch", reduction="sum")(f, torch.zeros_like(f))
    (grad,) = torch.autograd.grad(value, f)
    fd = f.detach().double().requires_grad_(True)
    (want,) = torch.autograd.grad((fd / F.softplus((fd ** 2) ** 2.5)).sum(), fd)
    torch.testing.assert_close(grad.double(), want, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


@pytest.mark.parametrize("backend", ["reference", "torch"] + (["triton"] if importlib.util.find_spec("triton") else []))
def test_a_fractional_power_of_softplus_far_below_zero(backend):
    """softplus(f)^(1/4) at f = -1893 (float64): softplus(f) = e^-1893 underflows to 0, its fourth root e^-473 does
    not. softplus(x)^a is exp(a log_softplus(x)) now (passes/stabilize.py, power_of_probability; the atom
    log_softplus, x + log1p(-e^x / 2) below -20), as sigmoid(x)^a already was exp(-a softplus(-x)). Truth: mpmath.
    (The generator's case, bce()^0.25 at t = 0, is a power of the target mixture t softplus(-f) + (1 - t)
    softplus(f), which this does not reach: tests/fixtures/open.)"""
    dtype = torch.float32 if backend == "triton" else torch.float64
    source = "loss g() over binary:\n    return softplus(f)^(0.25)\n"
    f = torch.tensor([-1893.0, -120.0, -30.0, -19.9, 0.0, 5.0, 800.0], dtype=dtype, requires_grad=True)
    value = lossc.loss(source, backend=backend, reduction="none")(f, torch.zeros_like(f))
    (grad,) = torch.autograd.grad(value.sum(), f)
    with mpmath.workdps(40):
        sp = [mpmath.log1p(mpmath.exp(mpmath.mpf(float(v)))) for v in f.detach()]
        want = [float(s ** 0.25) for s in sp]
        want_grad = [float(0.25 * s ** -0.75 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for s, v in zip(sp, f.detach())]
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(value.double(), torch.tensor(want, dtype=torch.float64).to(dtype).double(), rtol=rtol, atol=0)
    torch.testing.assert_close(grad.double(), torch.tensor(want_grad, dtype=torch.float64).to(dtype).double(), rtol=rtol,
                               atol=0)
