"""The triton backend: every catalog loss of the row and elementwise forms against the reference backend,
in each regime of the row kernels, with float32, bfloat16 and float16 inputs, ignore_index, weights,
every reduction, [N, C, d1] inputs and grad_output != 1; the core-``tl`` helpers against torch; the
custom op under ``torch.compile(fullgraph=True)``; the generated modules; the kernels compiled for sm_90.

Without a GPU the kernels run under triton's interpreter (``TRITON_INTERPRET=1``, set by conftest.py
before triton is imported), on small shapes: the interpreter runs each program in numpy. With a GPU the
same tests run on CUDA tensors.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

import lossc  # noqa: E402
from lossc.codegen import triton_supported  # noqa: E402
from conftest import (ELEMENTWISE_KINDS, MULTICLASS, REFERENCES, assert_fullgraph_matches_eager,  # noqa: E402
                      backward, distribution_input, elementwise_input, elementwise_options, generator,
                      grad_output, multiclass_input)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
    pytest.skip("no GPU, and TRITON_INTERPRET is not set", allow_module_level=True)

CATALOG = {entry.name: entry.kind for entry in lossc.catalog()}
DISTRIBUTION = "distribution"
ROW = sorted(n for n, kind in CATALOG.items()
             if kind in (MULTICLASS, DISTRIBUTION) and triton_supported(lossc.parse(n)))
ELEMENTWISE = sorted(n for n, kind in CATALOG.items() if kind in ELEMENTWISE_KINDS)
BF16 = torch.bfloat16
F16 = torch.float16
F32 = torch.float32


def _launcher(spec, **params):
    return lossc.module(spec, target="all", **params).KERNEL.triton


def _params(name, alt=False):
    ref = REFERENCES[name]
    return dict(ref.alt_params if alt and ref.alt_params else ref.params)


def _run(spec, backend, x, t, go, options, call, params, regime=None):
    """(value, gradient) of a loss module on a fresh leaf; regime=(tile_classes, chunk[, serpentine])
    forces one."""
    module = lossc.loss(spec, backend=backend, **options, **params)
    leaf = x.detach().requires_grad_(True)  # (a view stays a view: strided inputs are tested as such)
    if regime is None:
        out = module(leaf, t, **call)
    else:
        with _launcher(spec, **params).configured(*regime):
            out = module(leaf, t, **call)
    backward(out, go if go is None else go.to(out.device))
    return out.detach(), leaf.grad


def _close(got, expected, same_dtype, rtol, atol_fraction, what):
    """|got - expected| <= rtol |expected| + atol + 4 |same_dtype - expected|: as close to the float64
    truth as the reference backend is in the input's dtype (times 4), up to rtol and atol."""
    got, expected, same_dtype = got.double().cpu(), expected.double().cpu(), same_dtype.double().cpu()
    atol = atol_fraction * float(expected.abs().max()) + 1e-9 if expected.numel() else 0.0
    allowed = rtol * expected.abs() + atol + 4 * (same_dtype - expected).abs()
    bad = ~((got - expected).abs() <= allowed)
    assert not bool(bad.any()), (f"{what}: {int(bad.sum())} of {bad.numel()} differ, e.g. got "
                                 f"{got[bad][:3].tolist()} expected {expected[bad][:3].tolist()}")


def _check(name_or_text, x, t, reduction, options, call, params, regime=None, seed=()):
    """The triton backend on x (its dtype, on DEVICE) against the reference backend on the same values
    in float64, with the reference's own error in x's dtype as the yardstick."""
    row = lossc.parse(name_or_text).form == "row"
    shape = (x.shape[0], *x.shape[2:]) if row else tuple(x.shape)
    go = grad_output(shape if reduction == "none" else (), *seed)
    value, grad = _run(name_or_text, "triton", x.to(DEVICE), t.to(DEVICE), go,
                       {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in options.items()},
                       {k: v.to(DEVICE) for k, v in call.items()}, params, regime)
    exp_value, exp_grad = _run(name_or_text, "reference", x.double(), t, go, options, call, params)
    ref_value, ref_grad = _run(name_or_text, "reference", x, t, go, options, call, params)
    assert value.dtype == x.dtype and grad.dtype == x.dtype and grad.shape == x.shape
    assert value.shape == exp_value.shape
    # 16 bits: one rounding of each result to 8 (11) bits, and a second of the gradient in the backward
    rtol, atol = {BF16: (2e-2, 1e-2), F16: (4e-3, 2e-3)}.get(x.dtype, (2e-5, 1e-6))
    _close(value, exp_value, ref_value, rtol, atol, "loss")
    _close(grad, exp_grad, ref_grad, rtol, atol, "gradient")


# --------------------------------------------------------------------------
# row form: each regime
# --------------------------------------------------------------------------

# id -> (input shape, dtype, reduction, options (w = weight, i = ignored rows, s = sample_weight),
#        regime (tile_classes, chunk) or None for the default, alternative parameters)
ROW_CASES = {
    "rows-per-program-C5": ((33, 5), F32, "mean", "", None, False),
    "tile-C37-d1-ignore-none": ((3, 37, 4), F32, "none", "i", None, False),
    "tile-C300-weight-sum-alt": ((5, 300), F32, "sum", "w", None, True),
    "chunked-C37-weight-ignore-sample-none": ((4, 37), F32, "none", "wis", (16, 16), False),
    "chunked-C37-d1-mean-alt": ((2, 37, 3), F32, "mean", "i", (16, 16), True),
    "bf16-tile-C37-ignore-mean": ((6, 37), BF16, "mean", "i", None, False),
    "bf16-chunked-C37-none": ((3, 37), BF16, "none", "", (16, 8), False),
    "chunked-C32-whole-chunks-sum": ((3, 32), F32, "sum", "", (16, 16), False),
    # C = 5: 128 rows per program, so S = 300 positions make 3 image blocks per n (the last one partial)
    "image-blocks-C5-d1-weight-ignore-sample-mean": ((2, 5, 300), F32, "mean", "wis", None, False),
    "fp16-tile-C300-d1-sum": ((2, 300, 2), F16, "sum", "w", None, False),
}


def _row_options(flags, shape, t, g, spec):
    N, C, *rest = shape
    options, call = {}, {}
    if not spec.has_target:  # soft targets: no ignored rows; class weights only where the body reads them
        flags = flags.replace("i", "").replace("w", "w" if "weight" in spec.class_vectors else "")
    if "w" in flags:
        options["weight"] = torch.rand(C, generator=g, dtype=torch.float64) * 2 + 0.1
    if "i" in flags:
        drop = torch.rand(t.shape, generator=g) < 0.3
        drop.view(-1)[0] = True
        t = torch.where(drop, torch.full_like(t, -100), t)
    if "s" in flags:
        call["sample_weight"] = torch.rand((N, *rest), generator=g, dtype=torch.float64) * 3
    return options, call, t


@pytest.mark.parametrize("case", list(ROW_CASES))
@pytest.mark.parametrize("name", ROW)
def test_row_losses(name, case):
    shape, dtype, reduction, flags, regime, alt = ROW_CASES[case]
    g = generator("triton", name, case)
    spec = lossc.parse(name)
    if spec.has_target:
        x, t = multiclass_input(shape, g)
    else:  # soft targets q, given in the input's dtype
        x, t = distribution_input(shape, g)
        t = t.to(dtype)
    x = x.to(dtype)
    options, call, t = _row_options(flags, shape, t, g, spec)
    params = dict(_params(name, alt), **_class_params(spec, shape[1], g))
    _check(name, x, t, reduction, dict(options, reduction=reduction), call, params, regime, seed=(name, case))


def _class_params(spec, C, g):
    """Per-class parameters as C different values (the references' defaults are one number for every class)."""
    return {p.name: torch.rand(C, generator=g, dtype=torch.float64) * 4 + 0.05
            for p in spec.params if p.type == "class"}


@pytest.mark.parametrize("regime", [None, (16, 16)], ids=["tile", "chunked"])
def test_soft_targets_strided_in_their_own_dtype(regime):
    """q is read as it is: float64 probabilities for float32 logits, a transposed [N, C, d1] view."""
    g = generator("triton-soft-targets")
    x, q = distribution_input((3, 37, 5), g)
    q = q.transpose(0, 2).contiguous().transpose(0, 2)  # strides (1, 3, 111): neither contiguous nor [N, C]
    weight = torch.rand(37, generator=g) + 0.5
    _check("soft_cross_entropy", x.float(), q, "none", {"reduction": "none", "weight": weight}, {}, {"eps": 0.1},
           regime, seed=("soft",))


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("soft", [False, True], ids=["index", "soft"])
@pytest.mark.parametrize("shape", [(13, 7), (3, 5, 4, 2)], ids=["NC", "NCd1d2"])
def test_matches_torch_cross_entropy_with_weights_and_smoothing(shape, soft, reduction):
    """label_smoothing and soft_cross_entropy with class weights on triton, against F.cross_entropy (float32)."""
    g = generator("triton ce parity", shape, soft, reduction)
    N, C, *rest = shape
    x = torch.randn(shape, generator=g) * 3
    if soft:
        t = torch.softmax(torch.randn(shape, generator=g) * 2, dim=1)
    else:
        t = torch.randint(0, C, (N, *rest), generator=g)
        t = torch.where(torch.rand(t.shape, generator=g) < 0.3, torch.full_like(t, -100), t)
    weight = torch.rand(C, generator=g) * 2 + 0.1
    name = "soft_cross_entropy" if soft else "label_smoothing"
    module = lossc.loss(name, eps=0.2, weight=weight.to(DEVICE), reduction=reduction, backend="triton")
    leaf = x.to(DEVICE).detach().requires_grad_(True)
    out = module(leaf, t.to(DEVICE))
    out.sum().backward()
    ref_leaf = x.detach().double().requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(ref_leaf, t.double() if soft else t, weight=weight.double(),
                                                 reduction=reduction, label_smoothing=0.2)
    expected.sum().backward()
    torch.testing.assert_close(out.double().cpu(), expected.detach(), rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(leaf.grad.double().cpu(), ref_leaf.grad, rtol=2e-5, atol=1e-6)


# Class reductions the catalog lacks: a max over j != y, a logsumexp, reductions that need p (and lse),
# and aux reductions of the gradient that need them in turn (three sweeps of a chunked row).
CUSTOM = {
    "crammer_singer": "loss crammer_singer() over multiclass:\n    return pos(1 + max(z[j] for j != y) - z[y])\n",
    "max_margin_hinge": "loss max_margin_hinge() over multiclass:\n    return max(pos(1 + z[j] - z[y]) for j != y)\n",
    "lse_excluded": "loss lse_excluded(tau = 0.5) over multiclass:\n"
                    "    return logsumexp(tau * z[j] for j != y) - z[y]\n",
    "levels": "loss levels() over multiclass:\n    p = softmax(z)\n"
              "    return logsumexp(p[j] * z[j] for j) * (1 - p_t) + max(p[j] * p_t for j)"
              " + sum(sqrt(1 + z[j]^2) for j != y) / C\n",
    "atoms": "loss atoms(a = 0.3) over multiclass:\n"
             "    return mean(softplus(z[j]) for j) - z[y] + tanh(z[y]) + sqrt(1 + p_t) + abs(z[y]) + min(z[y], 1)"
             " + where(z[y] > 0, 1, 2) + clamp(z[y], -1, 1) + (1 - p_t)^a + log1p(p_t) + sigmoid(z[y])"
             " + expm1(-p_t)\n",
    # a class vector in the lse sweep, in a sweep of p with j != y, and at the target
    "class_vector": "loss class_vector(prior[C] = 1.0) over multiclass:\n    p = softmax(z)\n"
                    "    return logsumexp(z[j] + log(prior[j]) for j) - z[y] * prior[y]"
                    " + sum(prior[j] * p[j]^2 for j != y)\n",
    # soft targets in a sweep of p and in a max (its ties found again in the gradient sweep)
    "soft_levels": "loss soft_levels() over distribution:\n    p = softmax(z)\n"
                   "    return sum(q[j] * (1 - p[j])^2 for j) + max(q[j] * z[j] for j)\n",
}


@pytest.mark.parametrize("regime", [None, (16, 16), (16, 16, False)], ids=["tile", "chunked", "chunked-forward"])
@pytest.mark.parametrize("name", list(CUSTOM))
def test_row_reductions_beyond_the_catalog(name, regime):
    g = generator("triton-custom", name)
    spec = lossc.parse(CUSTOM[name])
    x, t = (multiclass_input if spec.has_target else distribution_input)((5, 37), g)
    _check(CUSTOM[name], x.float(), t if spec.has_target else t.float(), "none", {"reduction": "none"}, {},
           _class_params(spec, 37, g), regime, seed=(name,))


@pytest.mark.parametrize("dtype", [F32, BF16])
@pytest.mark.parametrize("factor", [1.0, -0.75])
def test_backward_scaling_covers_every_block(dtype, factor):
    """The backward's in-place grad *= grad_output runs a grid-stride loop over blocks (few programs):
    every element of a gradient of several blocks per program is scaled once; a factor of 1 leaves it."""
    launcher = _launcher("cross_entropy")
    g = torch.Generator().manual_seed(5)
    grad = torch.randn(5 * 4096 + 17, generator=g).to(dtype).to(DEVICE)
    expected = (grad.float() * factor).double()  # (as the kernel: a float32 product)
    launcher.scale_(grad, torch.tensor(factor, device=DEVICE))
    # (the interpreter rounds float32 to bfloat16 toward zero: one bf16 step of slack)
    rtol = 0.0 if dtype == F32 or factor == 1.0 else 2.0 ** -7
    torch.testing.assert_close(grad.double().cpu(), expected.cpu(), rtol=rtol, atol=0.0)


def test_regimes():
    launcher = _launcher("cross_entropy")
    assert launcher.regime(19) == launcher.regime(1000) == "tile"
    assert launcher.regime(128256) == "chunked"
    with launcher.configured(tile_classes=16, chunk=16, serpentine=False):
        assert launcher.regime(37) == "chunked" and not launcher.serpentine
    assert launcher.regime(37) == "tile" and launcher.serpentine


# --------------------------------------------------------------------------
# elementwise form
# --------------------------------------------------------------------------

# id -> (shape, dtype, reduction, option flags (conftest.elementwise_options: w, k, s), alt params)
ELEMENTWISE_CASES = {
    "d3-mean": ((5, 7, 3), F32, "mean", "", False),
    "weight-ignore-sample-none": ((41, 17), F32, "none", "wks", False),
    "programs-sum-alt": ((2500,), F32, "sum", "", True),
    "bf16-mean": ((6, 9), BF16, "mean", "", False),
    "bf16-ignore-none": ((5, 13), BF16, "none", "k", True),
    "fp16-weight-mean": ((3, 11), F16, "mean", "w", False),
}


@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_losses(name, case):
    shape, dtype, reduction, flags, alt = ELEMENTWISE_CASES[case]
    g = generator("triton", name, case)
    x, t = elementwise_input(CATALOG[name], shape, g, dtype)
    options, call, t = elementwise_options(flags, shape, t.double(), g)
    _check(name, x, t.to(dtype), reduction, dict(options, reduction=reduction), call, _params(name, alt),
           seed=(name, case))


# --------------------------------------------------------------------------
# no gradient, empty inputs, the backward
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("focal", (9, 37)), ("brier", (4, 37)), ("brier_distribution", (4, 37)),
                                         ("sigmoid_focal", (50,))])
def test_loss_without_gradient(name, shape):
    kind = CATALOG[name]
    g = generator("nograd", name)
    inputs = {MULTICLASS: multiclass_input, DISTRIBUTION: distribution_input}
    x, t = inputs[kind](shape, g) if kind in inputs else elementwise_input(kind, shape, g)
    x = x.float().to(DEVICE)
    for reduction in ("none", "mean"):
        module = lossc.loss(name, backend="triton", reduction=reduction)
        with torch.no_grad():
            got = module(x, t.to(DEVICE))
        expected = lossc.loss(name, backend="reference", reduction=reduction)(x.double().cpu(), t)
        torch.testing.assert_close(got.double().cpu(), expected, rtol=2e-5, atol=1e-6)
        if kind in inputs:
            with _launcher(name).configured(tile_classes=16, chunk=16), torch.no_grad():
                chunked = module(x, t.to(DEVICE))
            torch.testing.assert_close(chunked.double().cpu(), expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_empty_input(reduction):
    x = torch.zeros(0, 5, device=DEVICE, requires_grad=True)
    t = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    out = lossc.loss("focal", backend="triton", reduction=reduction)(x, t)
    reference = lossc.loss("focal", backend="torch", reduction=reduction)(x.detach().cpu(), t.cpu())
    assert out.shape == reference.shape
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_second_backward_is_refused():
    """The backward scales the saved gradient in place (no second N x C buffer): autograd then refuses
    a second backward through the same graph instead of using the scaled gradient."""
    x = torch.randn(4, 5, device=DEVICE, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3], device=DEVICE)
    out = lossc.loss("cross_entropy", backend="triton")(x, t)
    (out * 2.0).backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (out * 2.0).backward()


def test_backend_choice(monkeypatch):
    from lossc.runtime import _engine
    module = lossc.module("focal", target="all")
    engine = _engine
    x = torch.randn(3, 4, device=DEVICE)
    assert engine(module.KERNEL, "auto", x) == ("triton" if DEVICE == "cuda" else "torch")
    assert engine(module.KERNEL, "auto", x.double()) == "torch"  # float64: the torch engine
    assert engine(module.KERNEL, "triton", x) == "triton"
    with pytest.raises(lossc.LossInputError, match="float32"):
        engine(module.KERNEL, "triton", x.double())
    torch_only = lossc.module("focal", target="torch")
    assert engine(torch_only.KERNEL, "auto", x) == "torch"
    with pytest.raises(lossc.LossParamError, match="not available"):
        engine(torch_only.KERNEL, "triton", x)
    triton_only = lossc.module("focal", target="triton")
    with pytest.raises(lossc.LossParamError, match="not in this module"):
        engine(triton_only.KERNEL, "torch", x)
    assert engine(triton_only.KERNEL, "auto", x) == "triton"
    cpu = torch.randn(3, 4)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(lossc.LossInputError, match="GPU tensors"):
        engine(module.KERNEL, "triton", cpu)
    assert engine(triton_only.KERNEL, "auto", cpu) == "reference"  # a CPU fallback


# --------------------------------------------------------------------------
# torch.compile: one custom op, no graph break
# --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compile_fullgraph(backend, reduction):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 5).to(DEVICE)
    loss = lossc.loss("focal", backend=backend, reduction=reduction, weight=torch.rand(5) + 0.5).to(DEVICE)

    def step(x, t):
        return (loss(layer(x), t) * 1.5).sum()

    x = torch.randn(6, 8, device=DEVICE)
    t = torch.tensor([0, 1, 2, -100, 4, 3], device=DEVICE)
    assert_fullgraph_matches_eager(step, layer, x, t)


# --------------------------------------------------------------------------
# the core-tl helpers against torch, float32, wide ranges
# --------------------------------------------------------------------------

from lossc import triton_runtime as _rt  # noqa: E402

_tl_log1p, _tl_expm1, _tl_tanh = _rt._tl_log1p, _rt._tl_expm1, _rt._tl_tanh
_tl_softplus, _tl_logratio, _tl_pow = _rt._tl_softplus, _rt._tl_logratio, _rt._tl_pow
_tl_sigmoid, _tl_powk = _rt._tl_sigmoid, _rt._tl_powk


@triton.jit
def _apply(x_ptr, a_ptr, o_ptr, n, k, WHICH: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=1.0)
    if WHICH == 0:
        y = _tl_log1p(x)
    elif WHICH == 1:
        y = _tl_expm1(x)
    elif WHICH == 2:
        y = _tl_tanh(x)
    elif WHICH == 3:
        y = _tl_softplus(x)
    elif WHICH == 4:
        y = _tl_logratio(x)
    elif WHICH == 6:
        y = _tl_sigmoid(x)
    elif WHICH == 7:
        y = _tl_powk(x, k)  # one exponent for the launch (a parameter)
    else:
        y = _tl_pow(x, tl.load(a_ptr + offs, mask=mask, other=1.0))
    tl.store(o_ptr + offs, y, mask=mask)


def _helper(which, x, a=None, k=0.0):
    x = x.to(DEVICE)
    a = x if a is None else a.to(DEVICE)
    out = torch.empty_like(x)
    launch = _apply[(triton.cdiv(x.numel(), 1024),)]
    if DEVICE == "cpu":
        import numpy
        with numpy.errstate(all="ignore"):
            launch(x, a, out, x.numel(), k, WHICH=which, BLOCK=1024)
    else:
        launch(x, a, out, x.numel(), k, WHICH=which, BLOCK=1024)
    return out.cpu()


_MAGNITUDES = torch.logspace(-30, 30, 3001, dtype=torch.float64)
_WIDE = torch.cat([-_MAGNITUDES, _MAGNITUDES, torch.zeros(1)]).float()
HELPERS = {  # name -> (index in _apply, float64 truth, domain)
    "log1p": (0, torch.log1p, lambda x: x > -1),
    "expm1": (1, torch.expm1, lambda x: x < 88),
    "tanh": (2, torch.tanh, lambda x: x == x),
    "softplus": (3, torch.nn.functional.softplus, lambda x: x == x),
    "logratio": (4, lambda d: torch.where(d == 0, -1.0, d / -torch.expm1(d)), lambda x: x <= 0),
    "sigmoid": (6, torch.sigmoid, lambda x: x == x),
}


@pytest.mark.parametrize("name", list(HELPERS))
def test_helper_accuracy(name):
    """Within 4 float32 ulps (8 x 2^-24) of the float64 truth (and its infinities) over 1e-30 ... 1e30
    of either sign; torch's own float32 functions are within 1 to 2."""
    which, truth, domain = HELPERS[name]
    x = _WIDE[domain(_WIDE)]
    got = _helper(which, x).double()
    expected = truth(x.double())
    finite = expected.isfinite() & (expected.abs() > 1e-37) & (expected.abs() < 3e38)
    relative = (got - expected).abs() / expected.abs()
    # on a GPU tl.exp is ex2.approx of x log2(e): relative error up to |x| 2^-24 more (2 ulps at |x| = 2)
    bound = 8 * 2 ** -24 + (x.double().abs() * 2 ** -23 if DEVICE == "cuda" else 0)
    assert bool((relative <= bound)[finite].all()), (name, float(relative[finite].max()))
    # overflow and underflow land where float32 does
    assert torch.equal(got[~finite].isinf(), expected.float()[~finite].isinf())


def test_log1p_and_expm1_at_their_edges():
    x = torch.tensor([-1.0, float("inf"), float("-inf"), 0.0, 1e-30, -1e-30, 0.25, -0.25, 0.5, -0.5])
    got = _helper(0, x[:2].clone())
    assert got[0] == float("-inf") and got[1] == float("inf")
    e = _helper(1, x[1:].clone())
    torch.testing.assert_close(e, torch.expm1(x[1:].double()).float(), rtol=3e-7, atol=0)


@pytest.mark.parametrize("exponent", ["per element", "per launch"])
@pytest.mark.parametrize("a", [0.0, 0.5, 0.7, 1.0, 2.0, 2.5, 3.0, -1.0, -2.0, -0.5])
def test_pow_accuracy(a, exponent):
    """x^a = exp2(a log2|x|): the error grows with |a log2 x| (1e-7 of it); exact values at 0, 1,
    a = 0, and torch.pow's signs and NaNs for negative bases. With one exponent for the launch
    (_tl_powk, a parameter's power) a = 0, 1, 2, 3 are products: exact (as float32 rounds them)."""
    base = torch.logspace(-20, 20, 401, dtype=torch.float64).float()
    x = torch.cat([base, -base, torch.tensor([0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan")])])
    if exponent == "per launch":
        got = _helper(7, x, k=a).double()
        if a in (0.0, 1.0, 2.0, 3.0):
            torch.testing.assert_close(got, torch.pow(x, a).double(), rtol=0, atol=0, equal_nan=True)
    else:
        got = _helper(5, x, torch.full_like(x, a)).double()
    expected = torch.pow(x.double(), a)
    if abs(a) == 0.5:  # torch takes (-inf)^(1/2) as sqrt(-inf), NaN; lossc as C's pow (inf, 0)
        expected[-2] = math.pow(float("-inf"), a)
    assert torch.equal(got.isnan(), expected.isnan())
    finite = expected.isfinite() & (expected.abs() > 1e-37) & (expected.abs() < 1e37)
    ulps = 2e-7 if DEVICE == "cpu" else 4e-7  # ex2.approx on a GPU
    bound = ulps * (1 + torch.nan_to_num(a * torch.log2(x.double().abs())).abs())
    assert bool(((got - expected).abs() <= bound * expected.abs())[finite].all())
    torch.testing.assert_close(got[-3:], expected[-3:], rtol=0, atol=0, equal_nan=True)


# --------------------------------------------------------------------------
# generated modules
# --------------------------------------------------------------------------

def test_triton_target_is_deterministic():
    code = "import lossc, sys; sys.stdout.write(lossc.generate('brier', target='all'))"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert runs[0] == runs[1] == lossc.generate("brier", target="all")


def test_torch_target_has_no_triton():
    assert "triton" not in lossc.generate("focal", target="torch").split("# focal: generated from its spec.")[1]
    assert "def _loss_and_grad" not in lossc.generate("focal", target="triton")


@pytest.mark.skipif(DEVICE != "cpu", reason="runs the interpreter")
def test_compiled_triton_module_runs_without_lossc(tmp_path):
    for name, target in (("focal", "triton"), ("sigmoid_focal", "all")):
        result = subprocess.run([sys.executable, "-m", "lossc.cli", "compile", name, "--target", target, "-o",
                                 str(tmp_path / f"{name}_loss.py"), "--standalone"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    code = ("import sys; sys.modules['lossc'] = None\n"
            "import torch, focal_loss, sigmoid_focal_loss\n"
            "z = torch.randn(4, 3, requires_grad=True); y = torch.tensor([0, 1, 2, 0])\n"
            "l = focal_loss.FocalLoss(gamma=1.5)(z, y); l.backward()\n"
            "r = focal_loss.FocalLoss(gamma=1.5, backend='reference')(z.detach(), y)\n"
            "assert torch.allclose(l, r, rtol=1e-5), (l, r)\n"
            "u = torch.randn(20, requires_grad=True); t = (torch.rand(20) > 0.5).float()\n"
            "a = sigmoid_focal_loss.sigmoid_focal_loss(u, t, backend='triton')\n"
            "b = sigmoid_focal_loss.sigmoid_focal_loss(u, t, backend='torch')\n"
            "assert torch.allclose(a, b, rtol=1e-5), (a, b)\n"
            "print('ok')\n")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_generated_kernels_hold_no_spec_text():
    """Parameters reach kernels as constants k0, k1, ... computed on the host: no name from the spec
    appears inside a kernel."""
    text = "loss sneaky(evil = 1.0) over multiclass:\n    return -log(p_t) * evil\n"
    source = lossc.generate(text, target="all")
    kernels = source[source.index("if triton is not None:\n    @triton.jit"):source.index("_TRITON = _TritonLoss")]
    assert "evil" not in kernels and "sneaky_row_tile" in kernels


# --------------------------------------------------------------------------
# the GPU code path: every kernel compiles for sm_90 (triton's compiler and ptxas run without a GPU)
# --------------------------------------------------------------------------

def _compile_groups():
    half = len(ROW) // 2
    batch = sorted(n for n, kind in CATALOG.items() if kind == "batch")
    return {"row-1": ROW[:half], "row-2": ROW[half:], "elementwise": ELEMENTWISE, "batch": batch,
            "custom": list(CUSTOM)}


@pytest.mark.skipif(DEVICE != "cpu", reason="on a GPU every test above compiles its kernels for real")
@pytest.mark.parametrize("group", list(_compile_groups()))
def test_kernels_compile_for_the_gpu(group, tmp_path):
    names = []
    for name in _compile_groups()[group]:
        if name in CUSTOM:
            path = tmp_path / f"{name}.loss"
            path.write_text(CUSTOM[name])
            name = str(path)
        names.append(name)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = os.path.join(os.path.dirname(__file__), "triton_compile.py")
    result = subprocess.run([sys.executable, script, *names], capture_output=True, text=True, env=env)
    if result.returncode and "FAILED" not in result.stdout:
        pytest.skip(f"triton cannot compile for sm_90 here: {result.stderr.strip().splitlines()[-1:]}")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(DEVICE != "cpu", reason="the dry run is the CPU interpreter's")
def test_gpu_bench_dry_run():
    """benchmarks/gpu_bench.py runs end to end (checks, timing, table) on tiny shapes."""
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "gpu_bench.py")
    result = subprocess.run([sys.executable, script, "--dry-run", "--workloads", "llm,detection-bf16,anyloss-fp32",
                             "--variants", "lossc,lossc_inplace,lossc_forward,eager", "--losses", "brier"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ") and "| variant |" not in line]
    # 6 row losses x 4 variants on the llm shape, sigmoid_focal bf16 x 3 (lossc_forward is for chunked rows
    # only), anyloss_f1 x 2 (no in-place form)
    assert len(table) == 6 * 4 + 3 + 2
    assert not any("WRONG" in line or "error" in line for line in table)


@pytest.mark.skipif(DEVICE != "cpu", reason="the dry run is the CPU interpreter's")
def test_gpu_bench_chunk_sweep_dry_run():
    """--chunk-sweep checks and times every chunk size in both sweep orders (tiny shapes here)."""
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "gpu_bench.py")
    result = subprocess.run([sys.executable, script, "--dry-run", "--chunk-sweep"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "| chunk |" not in line]
    assert len(rows) == 8 and not any("WRONG" in row for row in rows)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_every_row_ignored(reduction):
    """As the torch engine and nn.CrossEntropyLoss: a mean over no rows is NaN, a sum 0, no gradient."""
    x = torch.randn(3, 5)
    t = torch.full((3,), -100)
    expected = lossc.loss("focal", backend="torch", reduction=reduction)(x, t)
    leaf = x.to(DEVICE).requires_grad_(True)
    out = lossc.loss("focal", backend="triton", reduction=reduction)(leaf, t.to(DEVICE))
    torch.testing.assert_close(out.cpu(), expected, equal_nan=True)
    out.sum().backward()
    assert bool((leaf.grad == 0).all())


@pytest.mark.parametrize("regime", [None, (16, 16)], ids=["tile", "chunked"])
def test_strided_inputs(regime):
    """Inputs that are views (transposed, sliced): the kernels take their strides, nothing is copied."""
    g = generator("strided")
    x, t = multiclass_input((37, 10), g)  # then transposed: [10, 37] with class stride 10
    x = x.float().t()
    t = torch.randint(0, 37, (10,), generator=g)
    _check("focal", x, t, "none", {"reduction": "none"}, {}, {}, regime, seed=("strided",))
    wide, _ = multiclass_input((6, 80), g)
    sliced = wide.float()[:, 3:77:2]  # [6, 37], row stride 80, class stride 2
    _check("brier", sliced, torch.randint(0, 37, (6,), generator=g), "mean", {}, {}, {}, regime, seed=("sliced",))
    # channels last [N, C, S] (class stride 1, position stride C), S = 200 >= BLOCK_R: image blocks there
    last, _ = multiclass_input((2 * 200, 5), g)
    last = last.float().reshape(2, 200, 5).transpose(1, 2)
    _check("focal", last, torch.randint(0, 5, (2, 200), generator=g), "mean", {}, {}, {}, regime,
           seed=("channels-last",))
