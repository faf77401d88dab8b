"""An independent numerical audit of every `proved` verdict of the catalog: a wrong `proved` is the worst
bug lossc can have. For each catalog loss (at its defaults) and each property the checker proves among
convex, nonnegative, bounded, symmetric, monotone, calibrated, proper and smooth, the hand-written reference of tests/references.py
(float64, not lossc's code) is sampled where a counterexample would show (MATH.md's definitions); a
sample that breaks the property fails the test. Sampling proves nothing; it only catches a false proof."""

from __future__ import annotations

import pytest
import torch

import lossc
from conftest import MULTICLASS, REFERENCES, generator

AUDITED = ("convex", "nonnegative", "bounded", "symmetric", "monotone", "calibrated", "proper", "smooth")
C = 4


def _proved():
    for entry in lossc.catalog():
        if entry.name not in REFERENCES or REFERENCES[entry.name].kind == "distribution":
            continue
        report = lossc.check(entry.name)
        for prop in AUDITED:
            if report[prop].verdict == "proved":
                yield pytest.param(entry.name, prop, id=f"{entry.name}-{prop}")


def _loss(name):
    """L(x, t) of the reference at the catalog's defaults, unreduced, float64."""
    ref = REFERENCES[name]
    params = dict(ref.params)
    return lambda x, t: ref.fn(x, t, **params)


def _scales():
    return torch.tensor([0.3, 1.0, 3.0, 8.0], dtype=torch.float64)


def _multiclass_points(g, n=256):
    """Logits [n, C] over scales 0.3..8 and every target."""
    scale = _scales()[torch.randint(0, 4, (n, 1), generator=g)]
    z = torch.randn((n, C), generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, C, (n,), generator=g)


def _targets(kind, n):
    values = {"binary": (0.0, 1.0), "margin": (-1.0, 1.0), "regression": (-2.0, 0.0, 0.5, 3.0)}[kind]
    return torch.tensor(values, dtype=torch.float64).repeat(n)


def _elementwise_points(kind, g, n=64):
    t = _targets(kind, n)
    scale = _scales()[torch.randint(0, 4, t.shape, generator=g)]
    return torch.randn(t.shape, generator=g, dtype=torch.float64) * scale, t


def _audit_convex(name, kind, loss, g):
    """Midpoint convexity in the model output along random pairs (same target)."""
    if kind == MULTICLASS:
        a, t = _multiclass_points(g)
        b, _ = _multiclass_points(g)
    else:
        a, t = _elementwise_points(kind, g)
        b, _ = _elementwise_points(kind, g)
    mid, ends = loss((a + b) / 2, t), (loss(a, t) + loss(b, t)) / 2
    gap = mid - ends
    assert float(gap.max()) <= 1e-9 * (1 + float(ends.abs().max())), f"midpoint above the chord by {float(gap.max())}"


def _audit_nonnegative(name, kind, loss, g):
    for level in (1.0, 8.0, 30.0):
        if kind == MULTICLASS:
            x, t = _multiclass_points(g)
            x = x / x.abs().amax(1, keepdim=True) * level
        else:
            x, t = _elementwise_points(kind, g)
            x = torch.sign(x) * level * torch.rand(x.shape, generator=g, dtype=torch.float64)
        value = loss(x, t)
        assert float(value.min()) >= -1e-12, f"negative loss {float(value.min())} at scale {level}"


def _audit_bounded(name, kind, loss, g):
    """sup L finite: the largest value does not keep growing from |x| = 40 to 400."""
    highs = []
    for level in (40.0, 400.0):
        if kind == MULTICLASS:
            x, t = _multiclass_points(g)
            x = torch.sign(x) * level
        else:
            x, t = _elementwise_points(kind, g)
            x = torch.sign(x) * level
        value = loss(x, t)
        assert bool(torch.isfinite(value).all())
        highs.append(float(value.max()))
    assert highs[1] <= 1.5 * highs[0] + 1.0, f"max {highs[0]} at |x| = 40 but {highs[1]} at 400"


def _audit_symmetric(name, kind, loss, g):
    """The sum of the loss over every label is the same for every model output."""
    if kind == MULTICLASS:
        z, _ = _multiclass_points(g, 64)
        sums = sum(loss(z, torch.full((z.shape[0],), k)) for k in range(C))
    else:
        f = torch.randn(64, generator=g, dtype=torch.float64) * 3
        labels = {"binary": (0.0, 1.0), "margin": (-1.0, 1.0)}[kind]
        sums = sum(loss(f, torch.full_like(f, v)) for v in labels)
    assert float(sums.max() - sums.min()) <= 1e-9 * (1 + float(sums.abs().max())), f"sums from {sums.min()} to {sums.max()}"


def _audit_monotone(name, kind, loss, g):
    """Multiclass: non-increasing in p_t (the target's logit raised, the others fixed); margin:
    non-increasing in m; binary: y = 1 non-increasing, y = 0 non-decreasing in f; regression:
    non-increasing for r = y - yhat < 0 and non-decreasing for r > 0."""
    steps = torch.linspace(-12, 12, 97, dtype=torch.float64)
    if kind == MULTICLASS:
        base, t = _multiclass_points(g, 32)
        values = []
        for s in steps:
            z = base.clone()
            z[torch.arange(z.shape[0]), t] += s
            values.append(loss(z, t))
        rising = torch.stack(values, 1)  # p_t increases along dim 1
        assert float(rising.diff(dim=1).max()) <= 1e-9 * (1 + float(rising.abs().max()))
        return
    if kind == "regression":
        for y in (-2.0, 0.0, 3.0):
            r = steps
            value = loss(y - r, torch.full_like(r, y))  # yhat = y - r
            neg, pos = value[r <= 0], value[r >= 0]
            assert float(neg.diff().max()) <= 1e-9 and float(pos.diff().min()) >= -1e-9
        return
    for label, sign in ({"margin": ((1.0, 1), (-1.0, -1)), "binary": ((1.0, 1), (0.0, -1))}[kind]):
        value = loss(steps, torch.full_like(steps, label))
        # non-increasing in the margin: with label -1 (or 0) the margin falls as f rises
        assert float((sign * value.diff()).max()) <= 1e-9 * (1 + float(value.abs().max()))


def _minimise_risk(kind, loss, q, g, starts=4, iterations=300):
    """The best minimiser found of the conditional risk R(x; q) = sum_k q_k L(x, k) (multiclass: x the
    logits [C]; binary/margin: x the score, q = (P(y = first label), P(y = second label)))."""
    labels = list(range(C)) if kind == MULTICLASS else {"binary": (0.0, 1.0), "margin": (-1.0, 1.0)}[kind]
    size = (1, C) if kind == MULTICLASS else (1,)
    best, best_risk = None, float("inf")
    for start in range(starts):
        x = (torch.randn(size, generator=g, dtype=torch.float64) * (0 if start == 0 else 2)).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.1)

        def risk():
            targets = [torch.tensor([k]) if kind == MULTICLASS else torch.tensor([k], dtype=torch.float64)
                       for k in labels]
            return sum(q[i] * loss(x, tk).sum() for i, tk in enumerate(targets))
        for _ in range(iterations):
            opt.zero_grad()
            value = risk()
            value.backward()
            opt.step()
        with torch.no_grad():
            final = float(risk())
        if final < best_risk:
            best, best_risk = x.detach().clone(), final
    return best


def _posteriors(kind, g, count=6):
    """Class posteriors with a clear largest entry (at least 0.15 above the next)."""
    out = []
    while len(out) < count:
        q = torch.rand(C if kind == MULTICLASS else 2, generator=g, dtype=torch.float64) ** 2
        q = q / q.sum()
        top = q.sort(descending=True).values
        if float(top[0] - top[1]) >= 0.15:
            out.append(q)
    return out


def _audit_calibrated(name, kind, loss, g):
    """The minimiser of the conditional risk predicts the most likely class (score sign for binary)."""
    for q in _posteriors(kind, g):
        x = _minimise_risk(kind, loss, q, g)
        if kind == MULTICLASS:
            assert int(x.argmax()) == int(q.argmax()), f"q = {q.tolist()}: minimiser {x.tolist()}"
        else:
            assert float(x) * (float(q[1]) - float(q[0])) > 0, f"q = {q.tolist()}: minimiser {float(x)}"


def _audit_proper(name, kind, loss, g):
    """The minimiser of the conditional risk gives the posterior back (softmax, or sigmoid for binary)."""
    for q in _posteriors(kind, g, count=4):
        x = _minimise_risk(kind, loss, q, g, iterations=1500)
        p = torch.softmax(x, -1)[0] if kind == MULTICLASS else torch.sigmoid(x)
        expected = q if kind == MULTICLASS else q[1:]
        torch.testing.assert_close(p, expected, rtol=0, atol=2e-3)


def _audit_smooth(name, kind, loss, g):
    """A Lipschitz gradient has bounded second differences: along random lines through points of scale
    0.3..8, |L(x + h d) - 2 L(x) + L(x - h d)| / h^2 must not grow as h shrinks from 1e-2 to 1e-4 (at a
    kink it grows like 1/h)."""
    if kind == MULTICLASS:
        x, t = _multiclass_points(g, 512)
        d = torch.randn(x.shape, generator=g, dtype=torch.float64)
        d = d / d.norm(dim=1, keepdim=True)
    else:
        x, t = _elementwise_points(kind, g, 128)
        x = torch.cat([x, torch.linspace(-3, 3, 601, dtype=torch.float64).repeat(len(_targets(kind, 1)))])
        t = torch.cat([t, _targets(kind, 1).repeat_interleave(601)])
        d = torch.ones_like(x)

    def curvature(h):
        return ((loss(x + h * d, t) - 2 * loss(x, t) + loss(x - h * d, t)) / h**2).abs().max()
    coarse, fine = float(curvature(1e-2)), float(curvature(1e-4))
    assert fine <= 3 * coarse + 1.0, f"second differences {coarse} at h = 1e-2, {fine} at h = 1e-4"


@pytest.mark.parametrize("name, prop", list(_proved()))
def test_proved_verdicts_survive_sampling(name, prop):
    kind = REFERENCES[name].kind
    g = generator("audit", name, prop)
    globals()[f"_audit_{prop}"](name, kind, _loss(name), g)


def test_the_audit_catches_a_false_proof():
    """Each audit rejects a loss without its property."""
    g = torch.Generator().manual_seed(0)
    focal = _loss("focal")  # not convex in z
    with pytest.raises(AssertionError):
        _audit_convex("focal", MULTICLASS, focal, g)
    with pytest.raises(AssertionError):  # cross-entropy is unbounded
        _audit_bounded("cross_entropy", MULTICLASS, _loss("cross_entropy"), g)
    with pytest.raises(AssertionError):  # nor symmetric
        _audit_symmetric("cross_entropy", MULTICLASS, _loss("cross_entropy"), g)
    with pytest.raises(AssertionError):  # poly1 with eps = -3 rises past p_t = 1/3
        _audit_monotone("poly1", MULTICLASS, lambda z, t: REFERENCES["poly1"].fn(z, t, eps=-3.0), g)
    with pytest.raises(AssertionError):  # rewards the wrong class
        _audit_calibrated("x", MULTICLASS, lambda z, t: torch.softmax(z, -1).gather(-1, t[:, None])[:, 0], g)
    with pytest.raises(AssertionError):  # focal is calibrated but not proper
        _audit_proper("focal", MULTICLASS, focal, g)
    with pytest.raises(AssertionError):  # hinge has a kink at m = 1
        _audit_smooth("hinge", "margin", _loss("hinge"), g)
    with pytest.raises(AssertionError):  # log-sum-exp minus 2 z_y goes negative
        _audit_nonnegative("x", MULTICLASS, lambda z, t: REFERENCES["cross_entropy"].fn(z, t) - 1.0, g)
