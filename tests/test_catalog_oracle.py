"""Every catalog loss against the hand-written references of ``tests/references.py``.

Values and gradients (with a grad_output that is not 1) of both backends ("torch": the fused
autograd.Function with the symbolic gradient; "reference": the loss expression under autograd), for
every reduction, at odd shapes; gradcheck; weight / ignore_index / sample_weight; reduced-precision
dtypes; saturated logits; and hand-written ``.loss`` text outside the catalog.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lossc
from conftest import (ELEMENTWISE_KINDS, MULTICLASS, REFERENCES, elementwise_input, elementwise_options,
                      elementwise_target, generator, grad_output, loss_shape, make_input, multiclass_input,
                      param_sets, reduce_reference, reference_unreduced, run_with_grad)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import extreme_sweep as sweep  # noqa: E402

NAMES = sorted(REFERENCES)
MULTICLASS_NAMES = [n for n in NAMES if REFERENCES[n].kind == MULTICLASS]
ELEMENTWISE_NAMES = [n for n in NAMES if REFERENCES[n].kind in ELEMENTWISE_KINDS]
BACKENDS = ("torch", "reference")
REDUCTIONS = ("none", "mean", "sum")
SHAPES = {
    MULTICLASS: [(41, 1271), (5, 7, 3, 2)],
    "binary": [(41, 17), (3, 5, 7)],
    "margin": [(41, 17), (3, 5, 7)],
    "regression": [(41, 17), (3, 5, 7)],
    "distribution": [(41, 1271), (5, 7, 3, 2)],
}
F64 = dict(rtol=1e-10, atol=1e-12)


def _shape_id(shape):
    return "x".join(map(str, shape))


def _cases(shapes=True):
    for name in NAMES:
        kind = REFERENCES[name].kind
        for label, params in param_sets(name):
            if not shapes:
                yield pytest.param(name, params, id=f"{name}-{label}")
                continue
            for shape in SHAPES[kind]:
                yield pytest.param(name, params, shape, id=f"{name}-{label}-{_shape_id(shape)}")


def _expected(name, x, t, go, **kw):
    """Value and gradient of the hand-written reference, reduced by the independent helper."""
    kind = REFERENCES[name].kind
    params = kw.pop("params")

    reads_weight = REFERENCES[name].reads_weight

    def fn(leaf):
        unreduced = reference_unreduced(name, leaf, t, params, ignore_index=kw.get("ignore_index"),
                                        weight=kw.get("weight"))
        return reduce_reference(unreduced, kind, t, reads_weight=reads_weight, **kw)
    return run_with_grad(fn, x, go)


def _got(module, x, t, go, **call):
    return run_with_grad(lambda leaf: module(leaf, t, **call), x, go)


# --------------------------------------------------------------------------
# the catalog is covered
# --------------------------------------------------------------------------

def test_every_catalog_loss_has_a_reference():
    from references import BATCH_REFERENCES, TASKS_REFERENCES  # tested in test_batch.py, test_tasks.py
    every = {**REFERENCES, **BATCH_REFERENCES, **TASKS_REFERENCES}
    catalog = {entry.name: entry.kind for entry in lossc.catalog()}
    assert set(catalog) == set(every)
    for name, kind in catalog.items():
        assert kind == every[name].kind, name


# --------------------------------------------------------------------------
# float64 values and gradients, every reduction, both backends
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, params, shape", list(_cases()))
def test_float64_value_and_gradient(name, params, shape, backend, reduction):
    kind = REFERENCES[name].kind
    g = generator(name, shape)
    x, t = make_input(kind, shape, g)
    out_shape = loss_shape(kind, shape) if reduction == "none" else ()
    go = grad_output(out_shape, name, shape, reduction)

    module = lossc.loss(name, backend=backend, reduction=reduction, **params)
    value, grad = _got(module, x, t, go)
    exp_value, exp_grad = _expected(name, x, t, go, params=params, reduction=reduction)

    assert value.dtype == torch.float64 and grad.dtype == torch.float64
    assert tuple(value.shape) == out_shape
    assert grad.shape == x.shape
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)
    if backend == "torch":  # the no-grad path of the fused backend computes the loss alone
        with torch.no_grad():
            torch.testing.assert_close(module(x, t), exp_value, **F64)


# --------------------------------------------------------------------------
# gradcheck of the fused backward
# --------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, params", list(_cases(shapes=False)))
def test_gradcheck_fused(name, params, reduction):
    kind = REFERENCES[name].kind
    x, t = make_input(kind, (4, 5), generator("gradcheck", name))  # elementwise inputs avoid the kinks
    module = lossc.loss(name, backend="torch", reduction=reduction, **params)
    x = x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: module(z, t), (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------------
# weight, ignore_index, sample_weight
# --------------------------------------------------------------------------

# combo name -> the options it sets: w = weight, i = ignore_index -100 (default), k = ignore_index = a
# class index (as segmentation does), s = sample_weight
MULTICLASS_COMBOS = {"weight": "w", "ignore_default": "i", "ignore_class": "k", "sample_weight": "s",
                     "weight_ignore_sample": "wks", "weight_ignore_default_sample": "wis"}


def _multiclass_options(combo, shape, t, g):
    N, C, *rest = shape
    options, call = {}, {}
    flags = MULTICLASS_COMBOS[combo]
    if "w" in flags:
        options["weight"] = torch.rand(C, generator=g, dtype=torch.float64) * 2 + 0.1
    drop = torch.rand(t.shape, generator=g) < 0.3
    if "i" in flags:
        t = torch.where(drop, torch.full_like(t, -100), t)
    if "k" in flags:
        options["ignore_index"] = 2
        t = torch.where(drop, torch.full_like(t, 2), t)
    if "s" in flags:
        call["sample_weight"] = torch.rand(t.shape, generator=g, dtype=torch.float64) * 3
    return options, call, t


def _assert_matches_reference(name, x, t, go, backend, reduction, options, call, params):
    """The loss module's value and gradient against the reference's (float64); returns lossc's."""
    module = lossc.loss(name, backend=backend, reduction=reduction, **options, **params)
    value, grad = _got(module, x, t, go, **call)
    exp_value, exp_grad = _expected(name, x, t, go, params=params, reduction=reduction, **options, **call)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)
    return value, grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("combo", list(MULTICLASS_COMBOS))
@pytest.mark.parametrize("shape", [(23, 11), (4, 7, 3, 2)], ids=_shape_id)
@pytest.mark.parametrize("name", MULTICLASS_NAMES)
def test_multiclass_weight_ignore_sample_weight(name, shape, combo, reduction, backend):
    params = REFERENCES[name].params
    g = generator("options", name, shape, combo)
    x, t = multiclass_input(shape, g)
    options, call, t = _multiclass_options(combo, shape, t, g)
    out_shape = loss_shape(MULTICLASS, shape) if reduction == "none" else ()
    go = grad_output(out_shape, name, combo, reduction)

    value, grad = _assert_matches_reference(name, x, t, go, backend, reduction, options, call, params)
    ignored = t == options.get("ignore_index", -100)
    assert bool(ignored.any()) == any(f in MULTICLASS_COMBOS[combo] for f in "ik")
    if reduction == "none":
        assert torch.all(value[ignored] == 0)
    assert torch.all(grad.movedim(1, -1)[ignored] == 0)  # dropped rows get no gradient


ELEMENTWISE_COMBOS = {"weight": "w", "ignore": "k", "sample_weight": "s", "weight_ignore_sample": "wks"}


def _elementwise_combo_params():
    for name in ELEMENTWISE_NAMES:
        for combo in ELEMENTWISE_COMBOS:
            for reduction in REDUCTIONS:
                for backend in BACKENDS:
                    yield pytest.param(name, combo, reduction, backend, id=f"{name}-{combo}-{reduction}-{backend}")


@pytest.mark.parametrize("name, combo, reduction, backend", list(_elementwise_combo_params()))
def test_elementwise_weight_ignore_sample_weight(name, combo, reduction, backend):
    kind = REFERENCES[name].kind
    params = REFERENCES[name].params
    shape = (6, 5, 7)
    g = generator("options", name, combo)
    x, t = elementwise_input(kind, shape, g)
    options, call, t = elementwise_options(ELEMENTWISE_COMBOS[combo], shape, t, g)
    out_shape = shape if reduction == "none" else ()
    go = grad_output(out_shape, name, combo, reduction)

    _assert_matches_reference(name, x, t, go, backend, reduction, options, call, params)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [None, 3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", [(23, 11), (4, 7, 3, 5)], ids=_shape_id)
def test_cross_entropy_matches_torch(shape, weighted, ignore_index, reduction, backend):
    g = generator("F.cross_entropy", shape, weighted, ignore_index)
    x, t = multiclass_input(shape, g)
    drop = torch.rand(t.shape, generator=g) < 0.25
    t = torch.where(drop, torch.full_like(t, -100 if ignore_index is None else ignore_index), t)
    weight = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.2 if weighted else None
    ii = {} if ignore_index is None else {"ignore_index": ignore_index}
    out_shape = loss_shape(MULTICLASS, shape) if reduction == "none" else ()
    go = grad_output(out_shape, shape, weighted, ignore_index, reduction)

    module = lossc.loss("cross_entropy", backend=backend, reduction=reduction, weight=weight, **ii)
    value, grad = _got(module, x, t, go)
    exp_value, exp_grad = run_with_grad(
        lambda z: F.cross_entropy(z, t, weight=weight, reduction=reduction, **ii), x, go)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothing_matches_torch(reduction, backend):
    x, t = multiclass_input((4, 7, 3, 5), generator("label_smoothing"))
    go = grad_output((4, 3, 5) if reduction == "none" else (), "label_smoothing", reduction)
    module = lossc.loss("label_smoothing", eps=0.2, backend=backend, reduction=reduction)
    value, grad = _got(module, x, t, go)
    exp_value, exp_grad = run_with_grad(
        lambda z: F.cross_entropy(z, t, label_smoothing=0.2, reduction=reduction), x, go)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)


_TORCH_ELEMENTWISE = {
    "bce": lambda f, y, **kw: F.binary_cross_entropy_with_logits(f, y, **kw),
    "mse": lambda f, y, **kw: F.mse_loss(f, y, **kw),
    "mae_regression": lambda f, y, **kw: F.l1_loss(f, y, **kw),
    "huber": lambda f, y, **kw: F.huber_loss(f, y, delta=0.7, **kw),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(_TORCH_ELEMENTWISE))
def test_elementwise_matches_torch(name, reduction, backend):
    kind = REFERENCES[name].kind
    x, t = elementwise_input(kind, (9, 4, 6), generator("torch", name))
    params = {"delta": 0.7} if name == "huber" else {}
    go = grad_output((9, 4, 6) if reduction == "none" else (), name, reduction)
    module = lossc.loss(name, backend=backend, reduction=reduction, **params)
    value, grad = _got(module, x, t, go)
    exp_value, exp_grad = run_with_grad(lambda z: _TORCH_ELEMENTWISE[name](z, t, reduction=reduction), x, go)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_weight_matches_torch(reduction, backend):
    """BCEWithLogitsLoss(weight=w): the weight multiplies, the mean divides by the number of elements."""
    x, t = elementwise_input("binary", (9, 4, 6), generator("bce weight"))
    weight = torch.rand(6, generator=generator("bce weight", 1), dtype=torch.float64) + 0.2
    go = grad_output((9, 4, 6) if reduction == "none" else (), "bce weight", reduction)
    module = lossc.loss("bce", backend=backend, reduction=reduction, weight=weight)
    value, grad = _got(module, x, t, go)
    exp_value, exp_grad = run_with_grad(
        lambda z: F.binary_cross_entropy_with_logits(z, t, weight=weight, reduction=reduction), x, go)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)


# --------------------------------------------------------------------------
# reduced precision: loss and gradient in the input dtype, close to float64
# --------------------------------------------------------------------------

DTYPES = {torch.float32: 64, torch.bfloat16: 4, torch.float16: 4}  # tolerance in units of the dtype's eps


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", list(DTYPES), ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("name", NAMES)
def test_reduced_precision(name, dtype, backend, reduction):
    kind = REFERENCES[name].kind
    params = REFERENCES[name].params
    shape = SHAPES[kind][0]
    x, t = make_input(kind, shape, generator("dtype", name), dtype=dtype)
    out_shape = loss_shape(kind, shape) if reduction == "none" else ()
    go = grad_output(out_shape, name, "dtype", reduction)
    if go is not None:
        go = go.to(dtype).double()  # exactly representable in the input dtype

    module = lossc.loss(name, backend=backend, reduction=reduction, **params)
    value, grad = _got(module, x, t, go)
    assert value.dtype == dtype and grad.dtype == dtype
    x64 = x.double()
    t64 = t if kind == MULTICLASS else t.double()  # (distribution targets too: float64 probabilities)
    exp_value, exp_grad = _expected(name, x64, t64, go, params=params, reduction=reduction)

    tol = DTYPES[dtype] * torch.finfo(dtype).eps
    for got, exp in ((value, exp_value), (grad, exp_grad)):
        assert torch.isfinite(got).all()
        scale = float(exp.abs().max())
        subnormal = torch.finfo(dtype).tiny * torch.finfo(dtype).eps  # float16 gradients of a mean go there
        torch.testing.assert_close(got.double(), exp, rtol=tol, atol=tol * scale + 4 * subnormal)


# --------------------------------------------------------------------------
# saturation: p_t -> 1 and p_t -> 0, |logits| = 1e4
# --------------------------------------------------------------------------

SAT_DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16,
              "float16": torch.float16}


def _assert_close_scaled(got, exp, dtype, *, magnitude=1.0, floor=1.0):
    """|got - exp| <= tol (|exp| + floor) elementwise, with tol = 4 eps(dtype) + eps(compute) * magnitude.

    ``floor`` is the natural scale of the quantity (losses and gradients of these losses in the logits are
    O(1)): an error of a few ulps of 1 is what float arithmetic promises, however small the true value.
    ``magnitude`` (the largest |input|) is the conditioning: rounding an input of size |z| moves it by
    eps |z|, and p = softmax(z) is exact only up to that (backward error)."""
    got = got.double()
    assert torch.isfinite(got).all(), got
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    tol = 4 * torch.finfo(dtype).eps + torch.finfo(compute).eps * magnitude
    bound = tol * (exp.abs() + floor)
    excess = (got - exp).abs() - bound
    if bool((excess > 0).any()):
        i = int(excess.flatten().argmax())
        raise AssertionError(f"{int((excess > 0).sum())} elements out of tolerance; worst at flat index {i}: "
                             f"got {got.flatten()[i].item()!r}, expected {exp.flatten()[i].item()!r} "
                             f"(bound {bound.flatten()[i].item():.3g})")


def _saturated_logits(level, dtype, C=5, N=4):
    """Rows with the target's logit at ``level`` and every other logit 0 (targets 0, 1, 2, 3)."""
    t = torch.arange(N) % C
    z = torch.zeros(N, C, dtype=torch.float64)
    z[torch.arange(N), t] = level
    return z.to(dtype), t


def _by_hand_focal(z, t, gamma):
    """Focal loss per row and its gradient in float64, by hand. With l = log p_t = z_y - logsumexp(z) and
    x = 1 - p_t = -expm1(l): L = -x^gamma l, dL/dl = -x^gamma + gamma p_t x^gamma (l / x)
    = -x^gamma (1 - gamma p_t r) with r = l / x -> -1 as x -> 0 (no 0^(gamma - 1) anywhere), and
    dl/dz_c = [c = y] - p_c."""
    logp = z - torch.logsumexp(z, 1, keepdim=True)
    ell = logp.gather(1, t[:, None]).squeeze(1)
    x = -torch.expm1(ell)
    p_t = torch.exp(ell)
    r = torch.where(x == 0, torch.full_like(x, -1.0), ell / torch.where(x == 0, torch.ones_like(x), x))
    xg = x**gamma
    loss = -xg * ell
    dl = -xg * (1 - gamma * p_t * r)
    onehot = torch.zeros_like(z).scatter_(1, t[:, None], 1.0)
    return loss, dl[:, None] * (onehot - torch.exp(logp))


def _by_hand_minus_log_one_minus_p_t(z, t):
    """-log(1 - p_t) and its gradient in float64, by hand, accurate at both ends.

    Loss: -log1p(-p_t) while p_t < 1/2 (p_t = exp(z_y - logsumexp(z)) is accurate there), else
    logsumexp(z) - logsumexp_{j != y}(z). Gradient: softmax(z) - q with q = softmax over j != y (0 at y),
    i.e. p_t at y and p_c - q_c = -q_c p_t elsewhere (p_c = q_c (1 - p_t)), with no cancellation."""
    is_y = torch.zeros_like(z, dtype=torch.bool).scatter_(1, t[:, None], True)
    rest = z.masked_fill(is_y, -math.inf)
    lse, lse_rest = torch.logsumexp(z, 1), torch.logsumexp(rest, 1)
    p_t = torch.exp(z.gather(1, t[:, None]).squeeze(1) - lse)
    loss = torch.where(p_t < 0.5, -torch.log1p(-p_t), lse - lse_rest)
    q = torch.softmax(rest, 1)
    grad = torch.where(is_y, p_t[:, None].expand_as(z), -q * p_t[:, None])
    return loss, grad


def test_by_hand_formulas_agree_with_autograd_where_float64_is_accurate():
    z, t = multiclass_input((6, 9), generator("by hand"))
    ones = torch.ones(6, dtype=torch.float64)
    loss, grad = _by_hand_focal(z, t, 0.5)
    exp_loss, exp_grad = run_with_grad(lambda leaf: REFERENCES["focal"].fn(leaf, t, gamma=0.5), z, ones)
    torch.testing.assert_close(loss, exp_loss, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)
    loss, grad = _by_hand_minus_log_one_minus_p_t(z, t)
    exp_loss, exp_grad = run_with_grad(
        lambda leaf: -torch.log1p(-torch.softmax(leaf, 1).gather(1, t[:, None]).squeeze(1)), z, ones)
    torch.testing.assert_close(loss, exp_loss, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)


def _focal_cases():
    for dname, dtype in SAT_DTYPES.items():
        for level in (20.0, 100.0, 1e4):
            for backend in BACKENDS:
                yield pytest.param(dtype, level, backend, id=f"{dname}-{level:g}-{backend}")


@pytest.mark.parametrize("dtype, level, backend", list(_focal_cases()))
def test_focal_gamma_half_saturated(dtype, level, backend):
    z, t = _saturated_logits(level, dtype)
    module = lossc.loss("focal", gamma=0.5, backend=backend, reduction="sum")
    value, grad = run_with_grad(lambda leaf: module(leaf, t), z, None)
    assert value.dtype == dtype and grad.dtype == dtype
    exp_loss, exp_grad = _by_hand_focal(z.double(), t, 0.5)
    _assert_close_scaled(value, exp_loss.sum(), dtype, magnitude=level)
    _assert_close_scaled(grad, 1.7 * exp_grad, dtype, magnitude=level)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", [20.0, 100.0, 1e4, -20.0, -100.0, -1e4], ids=lambda v: f"{v:g}")
@pytest.mark.parametrize("dtype", list(SAT_DTYPES.values()), ids=list(SAT_DTYPES))
def test_minus_log_one_minus_p_t_saturated(dtype, level, backend):
    z, t = _saturated_logits(level, dtype)
    module = lossc.loss("-log(1 - p_t)", over="multiclass", backend=backend, reduction="none")
    go = grad_output((4,), "mlog", level).to(dtype).double()
    value, grad = run_with_grad(lambda leaf: module(leaf, t), z, go)
    assert value.dtype == dtype and grad.dtype == dtype
    exp_loss, exp_grad = _by_hand_minus_log_one_minus_p_t(z.double(), t)
    _assert_close_scaled(value, exp_loss, dtype, magnitude=abs(level))
    _assert_close_scaled(grad, go[:, None] * exp_grad, dtype, magnitude=abs(level))


@pytest.mark.xfail(strict=True, reason=(
    "lossc precision limitation: -log(1 - p_t) is rewritten to logsumexp(z) - logsumexp_{j!=y}(z) for every "
    "p_t, which cancels to 0 when p_t is small; at z = [-20, 0, 0, 0, 0], y = 0 (float32) the loss is "
    "0.0 instead of 5.1529e-10 and the non-target gradients 0.0 instead of -1.2882e-10 (-log1p(-p_t) and "
    "-q_c p_t are exact there)"))
@pytest.mark.parametrize("backend", BACKENDS)
def test_minus_log_one_minus_p_t_small_p_t_relative_accuracy(backend):
    z, t = _saturated_logits(-20.0, torch.float32)
    module = lossc.loss("-log(1 - p_t)", over="multiclass", backend=backend, reduction="none")
    value, grad = run_with_grad(lambda leaf: module(leaf, t), z, torch.ones(4, dtype=torch.float64))
    exp_loss, exp_grad = _by_hand_minus_log_one_minus_p_t(z.double(), t)
    torch.testing.assert_close(value.double(), exp_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad.double(), exp_grad, rtol=1e-5, atol=0)


def _huge_inputs(name, shape=(16, 6)):
    kind = REFERENCES[name].kind
    g = generator("huge", name)
    x = 1e4 * (torch.randint(0, 2, shape, generator=g).double() * 2 - 1)
    if kind == MULTICLASS:
        return x, torch.randint(0, shape[1], shape[:1], generator=g)
    return x, elementwise_target(kind, shape, g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", list(SAT_DTYPES.values()), ids=list(SAT_DTYPES))
@pytest.mark.parametrize("name", ["cross_entropy", "poly1", "focal", "bce", "logistic"])
def test_huge_logits(name, dtype, backend):
    """|logits| = 1e4 (random signs, ties included): finite, and equal to the float64 reference."""
    kind = REFERENCES[name].kind
    params = REFERENCES[name].params
    x, t = _huge_inputs(name)
    go = grad_output(loss_shape(kind, x.shape), "huge", name).to(dtype).double()
    module = lossc.loss(name, backend=backend, reduction="none", **params)
    value, grad = run_with_grad(lambda leaf: module(leaf, t if kind == MULTICLASS else t.to(dtype)),
                                x.to(dtype), go)
    assert value.dtype == dtype and grad.dtype == dtype
    exp_value, exp_grad = run_with_grad(lambda leaf: REFERENCES[name].fn(leaf, t, **params), x, go)
    assert torch.isfinite(exp_value).all() and torch.isfinite(exp_grad).all()
    _assert_close_scaled(value, exp_value, dtype, magnitude=1e4)
    _assert_close_scaled(grad, exp_grad, dtype, magnitude=1e4)


@pytest.mark.parametrize("backend", [
    "torch",
    pytest.param("reference", marks=pytest.mark.xfail(strict=True, reason=(
        "reference backend precision limitation: autograd of torch.logsumexp forms p = exp(z - lse) with lse "
        "rounded at the scale of the logits, losing eps32 * |lse| relative accuracy; at |z| = 1e4 (float32) "
        "cross_entropy's gradient is off by 1.4e-4 where F.cross_entropy (exp(z - max) / sum) is off by 2e-8 "
        "(the fused torch engine forms p from exp(z - max) / sum and meets it)"))),
])
def test_huge_logits_cross_entropy_as_accurate_as_torch(backend):
    x, t = _huge_inputs("cross_entropy")
    go = torch.ones(16, dtype=torch.float64)
    _, exp_grad = run_with_grad(lambda leaf: F.cross_entropy(leaf, t, reduction="none"), x, go)
    _, torch_grad = run_with_grad(lambda leaf: F.cross_entropy(leaf, t, reduction="none"), x.float(), go)
    module = lossc.loss("cross_entropy", backend=backend, reduction="none")
    _, grad = run_with_grad(lambda leaf: module(leaf, t), x.float(), go)
    _assert_close_scaled(torch_grad, exp_grad, torch.float32)  # PyTorch meets 4 ulps of 1 ...
    _assert_close_scaled(grad, exp_grad, torch.float32)  # ... lossc should too


# every catalog loss at saturated inputs: loss and gradient finite (where the loss is representable)

def _saturated_inputs(kind, dtype):
    """scripts/extreme_sweep.py's saturated inputs (the table of docs/robustness.md), in dtype."""
    x, t = sweep.saturated_inputs(kind)
    return x.to(dtype), (t if kind == MULTICLASS else t.to(dtype))


def _saturated_cases():
    for name in NAMES:
        for label, params in param_sets(name):
            for dname in ("float64", "float32", "bfloat16"):
                for backend in BACKENDS:
                    yield pytest.param(name, params, SAT_DTYPES[dname], backend,
                                       id=f"{name}-{label}-{dname}-{backend}")


@pytest.mark.parametrize("name, params, dtype, backend", list(_saturated_cases()))
def test_saturated_inputs_stay_finite(name, params, dtype, backend):
    kind = REFERENCES[name].kind
    x, t = _saturated_inputs(kind, dtype)
    module = lossc.loss(name, backend=backend, reduction="none", **params)
    go = torch.ones(loss_shape(kind, x.shape), dtype=torch.float64)
    value, grad = run_with_grad(lambda leaf: module(leaf, t), x, go)
    t64 = t if kind == MULTICLASS else t.double()  # (distribution targets too: float64 probabilities)
    exp_value, exp_grad = run_with_grad(lambda leaf: REFERENCES[name].fn(leaf, t64, **params), x.double(), go)
    # where the true loss overflows the dtype (exp(1e4)), inf is the right answer
    representable = exp_value.abs() < torch.finfo(dtype).max / 4
    assert torch.isfinite(value[representable]).all(), value
    assert torch.isfinite(grad[representable]).all(), grad  # rows (multiclass) or elements
    # and close to the float64 reference where that is finite (its autograd of pow(0, gamma) is not)
    rows = kind in (MULTICLASS, "distribution")
    ok = representable & (torch.isfinite(exp_grad).all(1) if rows else torch.isfinite(exp_grad))
    magnitude = float(x.double().abs().max()) * params.get("s", 1.0)  # (ldam's logit scale s)
    _assert_close_scaled(value[ok], exp_value[ok], dtype, magnitude=magnitude)
    _assert_close_scaled(grad[ok], exp_grad[ok], dtype, magnitude=magnitude)


# --------------------------------------------------------------------------
# losses outside the catalog
# --------------------------------------------------------------------------

POLY3 = '''"""Third-order PolyLoss (a test loss, not in the catalog)."""
loss poly3(e1 = 1.0, e2 = 0.5, e3 = 0.25) over multiclass:
    x = 1 - p_t
    return -log(p_t) + e1 * x + e2 * x^2 + e3 * (1 - p_t)^3
'''


def _poly3_reference(z, t, e1, e2, e3):
    logp_t = F.log_softmax(z, 1).gather(1, t.unsqueeze(1)).squeeze(1)
    x = -torch.expm1(logp_t)
    return -logp_t + e1 * x + e2 * x**2 + e3 * x**3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("coefficients", [None, (0.5, -0.3, 0.2)], ids=["defaults", "given"])
def test_third_order_polyloss_text(coefficients, reduction, backend):
    e = dict(zip(("e1", "e2", "e3"), coefficients or (1.0, 0.5, 0.25)))
    shape = (41, 1271)
    x, t = multiclass_input(shape, generator("poly3"))
    go = grad_output((41,) if reduction == "none" else (), "poly3", reduction)
    module = lossc.loss(POLY3, backend=backend, reduction=reduction, **({} if coefficients is None else e))
    value, grad = _got(module, x, t, go)

    def fn(leaf):
        return reduce_reference(_poly3_reference(leaf, t, **e), MULTICLASS, t, reduction=reduction)
    exp_value, exp_grad = run_with_grad(fn, x, go)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poly_n_with_three_coefficients(reduction, backend):
    eps = [0.5, -0.3, 0.2]
    x, t = multiclass_input((5, 7, 3, 2), generator("poly_n 3"))
    go = grad_output((5, 3, 2) if reduction == "none" else (), "poly_n 3", reduction)
    for kwargs in ({"eps": eps}, {"eps": eps, "N": 3}, {"eps": torch.tensor(eps, dtype=torch.float64)}):
        module = lossc.loss("poly_n", backend=backend, reduction=reduction, **kwargs)
        value, grad = _got(module, x, t, go)

        def fn(leaf):
            return reduce_reference(_poly3_reference(leaf, t, *eps), MULTICLASS, t, reduction=reduction)
        exp_value, exp_grad = run_with_grad(fn, x, go)
        torch.testing.assert_close(value, exp_value, **F64)
        torch.testing.assert_close(grad, exp_grad, **F64)
    text_module = lossc.loss(POLY3, backend=backend, reduction=reduction, e1=eps[0], e2=eps[1], e3=eps[2])
    torch.testing.assert_close(text_module(x, t), module(x, t), **F64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bare_expression_matches_its_catalog_twin(backend):
    x, t = multiclass_input((41, 1271), generator("bare"))
    go = grad_output((41,), "bare")
    bare = lossc.loss("-log(p_t) + 2*(1 - p_t)", over="multiclass", backend=backend, reduction="none")
    value, grad = _got(bare, x, t, go)
    exp_value, exp_grad = run_with_grad(lambda leaf: REFERENCES["poly1"].fn(leaf, t, eps=2.0), x, go)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)
