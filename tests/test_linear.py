"""lossc.linear_loss / LinearLoss: a row loss on hidden @ weight.T + bias without the logits in memory.

Truths: hand-written torch losses on F.linear's logits under autograd (cross-entropy, label smoothing, z-loss,
focal, Poly-1, soft targets), and for every other row-form catalog loss the unfused module (reference
backend) on the same logits. float64 to 1e-12; bf16 against float64, no worse than eager bf16."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

import lossc
from lossc.linear import chunk_rows

ROW_LOSSES = [e.name for e in lossc.catalog() if e.kind in ("multiclass", "distribution")]
DISTRIBUTION = {e.name for e in lossc.catalog() if e.kind == "distribution"}


def _inputs(N=19, d=7, V=11, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(N, d, generator=g, dtype=torch.float64) * 0.8).to(dtype).requires_grad_()
    W = torch.randn(V, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    b = torch.randn(V, generator=g, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
    return h, W, b, g


def _targets(name, N, V, g, dtype=torch.float64):
    if name in DISTRIBUTION:
        return torch.softmax(torch.randn(N, V, generator=g, dtype=torch.float64), -1).to(dtype)
    return torch.randint(0, V, (N,), generator=g)


def _grads(loss, tensors, grad_output):
    tensors = [x for x in tensors if x is not None]
    return loss, torch.autograd.grad(loss, tensors, grad_output)


def _ignored_and_weighted(name, N, V, g):
    """Targets with two ignored rows and class weights (the options linear_loss takes), for a class-index loss;
    soft targets and no options for a distribution loss."""
    t = _targets(name, N, V, g)
    if name in DISTRIBUTION:
        return t, {}
    t[[2, 9]] = -100
    return t, dict(ignore_index=-100, weight_per_class=torch.rand(V, generator=g, dtype=torch.float64) + 0.5)


def _as_loss_options(options):
    """linear_loss's options as lossc.loss names them (weight_per_class is weight)."""
    return {("weight" if k == "weight_per_class" else k): v for k, v in options.items()}


def _close(a, b, tol):
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    return (a - b).abs().max().item() <= tol * scale if a.numel() else True


HAND = {  # independent of lossc: the loss of each row of logits z [N, V] and targets t [N], in plain torch
    "cross_entropy": lambda z, t: F.cross_entropy(z, t, reduction="none"),
    "label_smoothing": lambda z, t: F.cross_entropy(z, t, reduction="none", label_smoothing=0.1),
    "ce_zloss": lambda z, t: F.cross_entropy(z, t, reduction="none") + 1e-4 * torch.logsumexp(z, -1) ** 2,
    "focal": lambda z, t: -(1 - torch.softmax(z, -1).gather(1, t[:, None])[:, 0]) ** 2
    * torch.log_softmax(z, -1).gather(1, t[:, None])[:, 0],
    "poly1": lambda z, t: F.cross_entropy(z, t, reduction="none") + 1
    - torch.softmax(z, -1).gather(1, t[:, None])[:, 0],
    "soft_cross_entropy": lambda z, q: -(q * torch.log_softmax(z, -1)).sum(-1),
    "kl_div": lambda z, q: F.kl_div(torch.log_softmax(z, -1), q, reduction="none").sum(-1),
}


def _reduce(rows, reduction):
    return rows if reduction == "none" else rows.sum() if reduction == "sum" else rows.mean()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_written_truth_float64(name, reduction):
    h, W, b, g = _inputs(seed=1)
    t = _targets(name, h.shape[0], W.shape[0], g)
    go = torch.randn(h.shape[0], generator=g, dtype=torch.float64) if reduction == "none" \
        else torch.tensor(0.7, dtype=torch.float64)
    want, want_g = _grads(_reduce(HAND[name](F.linear(h, W, b), t), reduction), (h, W, b), go)
    got, got_g = _grads(lossc.linear_loss(name, h, W, t, b, reduction=reduction, chunk=4), (h, W, b), go)
    assert _close(got, want, 1e-12)
    for a, c in zip(got_g, want_g):
        assert _close(a, c, 1e-12)


@pytest.mark.parametrize("name", ROW_LOSSES)
def test_every_row_catalog_loss_matches_its_unfused_module(name):
    """Every reduction, ignored rows, class weights (where the loss takes them), bias or not, odd chunks."""
    h, W, b, g = _inputs(seed=2)
    N, V = h.shape[0], W.shape[0]
    t, options = _ignored_and_weighted(name, N, V, g)
    for reduction, bias, chunk in (("mean", b, 5), ("sum", None, 1), ("none", b, 64)):
        go = torch.randn(N, generator=g, dtype=torch.float64) if reduction == "none" \
            else torch.tensor(1.3, dtype=torch.float64)
        unfused = lossc.loss(name, reduction=reduction, backend="reference",
                             **_as_loss_options(options))
        want, want_g = _grads(unfused(F.linear(h, W, bias), t), (h, W, bias), go)
        got, got_g = _grads(lossc.linear_loss(name, h, W, t, bias, reduction=reduction, chunk=chunk, **options),
                            (h, W, bias), go)
        assert _close(got, want, 1e-11), (reduction, got, want)
        for a, c in zip(got_g, want_g):
            assert _close(a, c, 1e-11), reduction


def test_batch_time_layout_and_parameters():
    """hidden [B, T, d], target [B, T]; a catalog parameter as keyword; reduction none keeps [B, T]."""
    h, W, b, g = _inputs(N=12, seed=3)
    h3 = h.detach().reshape(3, 4, -1).requires_grad_()
    t = torch.randint(0, W.shape[0], (3, 4), generator=g)
    got = lossc.linear_loss("focal", h3, W, t, b, reduction="none", gamma=0.5, chunk=5)
    assert got.shape == (3, 4)
    want = lossc.loss("focal", reduction="none", gamma=0.5, backend="reference")(F.linear(h3, W, b).movedim(-1, 1), t)
    assert _close(got, want, 1e-12)
    got.sum().backward()
    assert h3.grad.shape == h3.shape


def test_contrastive_similarities_with_a_scale():
    """InfoNCE / CLIP: cross-entropy of q @ k.T / tau with the diagonal as target, both directions."""
    g = torch.Generator().manual_seed(4)
    q = F.normalize(torch.randn(23, 6, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(23, 6, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    tau, labels = 0.07, torch.arange(23)
    want = (F.cross_entropy(q @ k.T / tau, labels) + F.cross_entropy(k @ q.T / tau, labels)) / 2
    got = (lossc.linear_loss("cross_entropy", q, k, labels, scale=1 / tau, chunk=6)
           + lossc.linear_loss("cross_entropy", k, q, labels, scale=1 / tau, chunk=6)) / 2
    assert _close(got, want, 1e-12)
    gw, gg = torch.autograd.grad(want, (q, k)), torch.autograd.grad(got, (q, k))
    for a, c in zip(gg, gw):
        assert _close(a, c, 1e-12)


def test_user_written_row_loss():
    source = "loss mine(a = 0.3) over multiclass:\n    return -log(p_t) + a * sum(softmax(z)[j]^2 for j) - 0.01 * max(z[j] for j)\n"
    h, W, b, g = _inputs(seed=5)
    t = torch.randint(0, W.shape[0], (h.shape[0],), generator=g)
    want = lossc.loss(source, backend="reference", a=0.5)(F.linear(h, W, b), t)
    got = lossc.linear_loss(source, h, W, t, b, a=0.5, chunk=3)
    assert _close(got, want, 1e-12)
    for a, c in zip(torch.autograd.grad(got, (h, W, b)), torch.autograd.grad(want, (h, W, b))):
        assert _close(a, c, 1e-12)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_no_worse_than_eager(half):
    h, W, b, g = _inputs(N=64, d=32, V=200, seed=6)
    t = torch.randint(0, 200, (64,), generator=g)
    truth = F.cross_entropy(F.linear(h, W, b), t)
    truth_g = torch.autograd.grad(truth, (h, W, b))
    lows = [x.detach().to(half).requires_grad_() for x in (h, W, b)]
    eager = F.cross_entropy(F.linear(*lows), t)
    eager_g = torch.autograd.grad(eager, lows)
    lows2 = [x.detach().clone().requires_grad_() for x in lows]
    fused = lossc.linear_loss("cross_entropy", lows2[0], lows2[1], t, lows2[2], chunk=16)
    fused_g = torch.autograd.grad(fused, lows2)
    assert fused.dtype == half and all(x.dtype == half for x in fused_g)
    assert abs(fused.double() - truth) <= 2 * abs(eager.double() - truth) + 1e-2
    for f, e, tr in zip(fused_g, eager_g, truth_g):
        assert (f.double() - tr).norm() <= 2 * (e.double() - tr).norm() + 1e-6


def test_grad_output_scaling_and_no_grad():
    h, W, b, g = _inputs(seed=7)
    t = torch.randint(0, W.shape[0], (h.shape[0],), generator=g)
    with torch.no_grad():
        value = lossc.linear_loss("cross_entropy", h, W, t, b)
    assert _close(value, F.cross_entropy(F.linear(h, W, b), t), 1e-12)
    loss = lossc.linear_loss("cross_entropy", h, W, t, b, chunk=4)
    (3.0 * loss).backward()
    want = torch.autograd.grad(3.0 * F.cross_entropy(F.linear(h, W, b), t), (h, W, b))
    for got, c in zip((h.grad, W.grad, b.grad), want):
        assert _close(got, c, 1e-12)
    with pytest.raises(RuntimeError, match="backward runs once"):
        loss2 = lossc.linear_loss("cross_entropy", h, W, t, b)
        loss2.backward(retain_graph=True)
        loss2.backward()


def test_only_weight_requires_grad():
    h, W, b, g = _inputs(seed=8)
    t = torch.randint(0, W.shape[0], (h.shape[0],), generator=g)
    hd = h.detach()
    (gw,) = torch.autograd.grad(lossc.linear_loss("poly1", hd, W, t), (W,))
    (want,) = torch.autograd.grad(HAND["poly1"](F.linear(hd, W), t).mean(), (W,))
    assert _close(gw, want, 1e-12)


def test_module_form_and_pickling():
    h, W, b, g = _inputs(seed=9)
    t = torch.randint(0, W.shape[0], (h.shape[0],), generator=g)
    module = lossc.LinearLoss("ce_zloss", beta=1e-3, chunk=7)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    assert _close(again(h, W, t, b), module(h, W, t, b), 0.0)
    assert "beta=0.001" in repr(module)


def test_errors():
    h, W, b, g = _inputs()
    t = torch.randint(0, W.shape[0], (h.shape[0],), generator=g)
    with pytest.raises(lossc.LossKindError, match="row loss"):
        lossc.linear_loss("bce", h, W, t)
    with pytest.raises(lossc.LossInputError, match="features"):
        lossc.linear_loss("cross_entropy", h, W[:, :3], t)
    with pytest.raises(lossc.LossInputError, match="bias"):
        lossc.linear_loss("cross_entropy", h, W, t, b[:3])
    with pytest.raises(lossc.LossInputError, match="target"):
        lossc.linear_loss("cross_entropy", h, W, t[:4])
    with pytest.raises(lossc.LossInputError, match="class index"):
        lossc.linear_loss("cross_entropy", h, W, t + 100)
    with pytest.raises(lossc.LossParamError, match="scale"):
        lossc.linear_loss("cross_entropy", h, W, t, scale=math.inf)
    with pytest.raises(lossc.LossInputError, match="weight_per_class"):
        lossc.linear_loss("cross_entropy", h, W, t, weight_per_class=torch.ones(3, dtype=torch.float64))


def test_chunk_rows_fits_the_memory_target():
    m = chunk_rows(128256, 4096, torch.bfloat16)
    assert m % 8 == 0 and m * 128256 * (4 + 4 + 2) <= 256 << 20
    assert chunk_rows(10, 4, torch.float32, memory=1) == 1


def test_hugging_face_causal_lm_with_linear_loss():
    """docs/examples/hf_linear_loss.py: a tiny Llama trained with LinearLoss("ce_zloss") in place of its lm_head +
    loss gives the unfused model's losses, step by step (float64: to 1e-10)."""
    pytest.importorskip("transformers")
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parent.parent / "docs" / "examples" / "hf_linear_loss.py"
    spec = importlib.util.spec_from_file_location("hf_linear_loss", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    plain = example.train(fused=False, steps=3, dtype=torch.float64)
    fused = example.train(fused=True, steps=3, dtype=torch.float64)
    assert plain[0] != plain[-1]  # (it trains)
    for a, b in zip(plain, fused):
        assert abs(a - b) <= 1e-10 * abs(a)


# ---- the triton engine (TRITON_INTERPRET=1 on the CPU, set by conftest): one kernel, logits never stored


@pytest.mark.parametrize("name", ROW_LOSSES)
def test_triton_engine_matches_the_float64_truth(name):
    """float32 inputs on the triton engine against the unfused module in float64: mean with ignored rows, class
    weights and bias; none without bias (its backward runs the kernel again with the rows' grad_output)."""
    pytest.importorskip("triton")
    h, W, b, g = _inputs(N=21, d=19, V=23, seed=10)
    N, V = h.shape[0], W.shape[0]
    t, options = _ignored_and_weighted(name, N, V, g)
    for reduction, bias in (("mean", b), ("none", None)):
        go = torch.randn(N, generator=g, dtype=torch.float64) if reduction == "none" \
            else torch.tensor(1.3, dtype=torch.float64)
        unfused = lossc.loss(name, reduction=reduction, backend="reference",
                             **_as_loss_options(options))
        want, want_g = _grads(unfused(F.linear(h, W, bias), t), (h, W, bias), go)
        low = [None if x is None else x.detach().float().requires_grad_() for x in (h, W, bias)]
        tl = t.float() if t.is_floating_point() else t
        o32 = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in options.items()}
        got, got_g = _grads(lossc.linear_loss(name, low[0], low[1], tl, low[2], reduction=reduction,
                                              backend="triton", **o32), low, go.float())
        assert got.dtype == torch.float32
        assert _close(got.double(), want, 2e-5), (reduction, got, want)
        for a, c in zip(got_g, want_g):
            assert _close(a.double(), c, 2e-5), reduction


def test_triton_engine_contrastive_and_errors():
    pytest.importorskip("triton")
    g = torch.Generator().manual_seed(11)
    q = F.normalize(torch.randn(19, 6, generator=g), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(19, 6, generator=g), dim=-1).requires_grad_()
    labels = torch.arange(19)
    want = F.cross_entropy(q @ k.T / 0.1, labels)
    got = lossc.linear_loss("cross_entropy", q, k, labels, scale=10.0, backend="triton")
    assert _close(got, want, 1e-5)
    for a, c in zip(torch.autograd.grad(got, (q, k)), torch.autograd.grad(want, (q, k))):
        assert _close(a, c, 1e-5)
    with pytest.raises(lossc.LossParamError, match="backend"):
        lossc.LinearLoss("cross_entropy", backend="cuda")
