"""The harness itself (tests/gencheck.py, tests/genloss.py): its reverse-mode error bound of the reference
backend and its convention gradient at kinks accept what they should and still catch wrong gradients."""

from __future__ import annotations

import pytest

import gencheck as K
import genloss as G


def _loss(kind: str, ret: G.Node, name: str = "h") -> G.GeneratedLoss:
    return G.GeneratedLoss(kind=kind, name=name, params=(), locals=(), ret=ret)


def _wrong(monkeypatch, index: int, value=None, factor: float = 1.0):
    """Make run_backend report gradient[index] as value (or times factor)."""
    real = K.run_backend

    def run(loss, case, backend, dtype):
        v, g = real(loss, case, backend, dtype)
        g = list(g)
        g[index] = value if value is not None else g[index] * factor
        return v, g
    monkeypatch.setattr(K, "run_backend", run)


#: f + squared_hinge() * (m + f): two reverse-mode paths c t S and c S, S = 3e6, that cancel (fixture 1249)
_PATHS = _loss("margin", G.bin_("add", G.leaf("f"), G.bin_("mul", G.Node("call", (), ("squared_hinge", ())),
                                                             G.bin_("add", G.leaf("m"), G.leaf("f")))))
_PATHS_CASE = dict(x=[1734.3326696093309], shape=[1], target=[-1.0], reduction="sum", weight=[0.7989185595715771])


def test_reverse_bound_covers_autograd_path_sums_only_on_the_reference_backend():
    case = K.Case(**_PATHS_CASE)
    t = K.truth(_PATHS, case, K.F32)
    assert K.check(_PATHS, case, "reference", K.F32, expected=t) == []
    # the allowance is the paths' scale (2.4e6 in float32 ulps), not the gradient's: far above the forward one
    assert t.grad_rev_tol[0] > 100 * t.grad_tol[0]
    assert t.grad_rev_tol[0] < 10.0  # a few ulps of 2.4e6 (0.25 each), not a vacuous bound
    # the same error on a fused backend is still a mismatch: the bound applies to eager autograd only
    real = K.run_backend
    try:
        K.run_backend = lambda *a: (real(*a)[0], [0.75])
        assert K.check(_PATHS, case, "torch", K.F32, expected=t)
        assert K.check(_PATHS, case, "reference", K.F32, expected=t) == []
    finally:
        K.run_backend = real


@pytest.mark.parametrize("loss,case", [
    (_PATHS, _PATHS_CASE),
    (_loss("regression", G.fn("tanh", G.bin_("mul", G.leaf("r"), G.leaf("r")))),
     dict(x=[0.3], shape=[1], target=[3.28], reduction="mean")),
])
def test_reverse_bound_still_catches_a_gradient_off_by_1e_3(monkeypatch, loss, case):
    case = K.Case(**case)
    assert K.check(loss, case, "reference", K.F64) == []
    _wrong(monkeypatch, 0, factor=1 + 1e-3)
    found = K.check(loss, case, "reference", K.F64)
    assert [m.what for m in found] == ["grad"]


def test_saturated_tanh_derivative_has_its_absolute_rounding_only_where_it_is_computed():
    """torch's tanh backward 1 - t^2 is off by ~1 ulp of 1 where sech^2 is 7.6e-8 (fixture 2110); where tanh
    rounds to 1 exactly, 1 - t^2 is 0 and the bound is the true (tiny) derivative, not an ulp of 1."""
    loss = _loss("regression", G.fn("tanh", G.bin_("mul", G.leaf("r"), G.leaf("r"))))
    mid = G.row_truth(loss, {"x": 0.0, "y": 2.98}, roundoff=2.0 ** -24)
    far = G.row_truth(loss, {"x": 0.0, "y": 30.0}, roundoff=2.0 ** -24)
    assert 1e-7 < mid.grad_rev[0] * 2.0 ** -24 < 1e-5
    assert far.grad_rev[0] * 2.0 ** -24 < 1e-300


#: sqrt(s^2) - pos(s + s) at s = 0 (fixture 484): the kinks cancel, the true derivative is -1, the
#: convention abs'(0) = pos'(0) = 0 gives 0
_KINKS = _loss("batch", G.Node("bred", (G.bin_("sub", G.fn("sqrt", G.bin_("pow", G.leaf("s"), G.num("2"))),
                                               G.fn("pos", G.bin_("add", G.leaf("s"), G.leaf("s")))),), "mean"))
_KINKS_CASE = dict(x=[0.0, 0.85, 0.5], shape=[3], target=[0.0, 1.0, 0.0], reduction="mean", grad_output=-2.0)


def test_convention_gradient_at_cancelling_kinks():
    rt = G.row_truth(_KINKS, {"s": [0.0, 0.85, 0.5], "y": [0.0, 1.0, 0.0], "w": [1.0, 1.0, 1.0]})
    assert not rt.kinked[0]
    assert float(rt.grad[0]) == pytest.approx(-1 / 3)
    assert float(rt.grad_conv[0]) == 0.0
    assert [float(g) for g in rt.grad_conv[1:]] == pytest.approx([float(g) for g in rt.grad[1:]])
    away = G.row_truth(_KINKS, {"s": [0.25, 0.85, 0.5], "y": [0.0, 1.0, 0.0], "w": [1.0, 1.0, 1.0]})
    assert away.grad_conv is None  # no atom at its kink: only the true derivative is accepted


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_convention_rule_accepts_either_and_catches_a_wrong_gradient(monkeypatch, backend):
    case = K.Case(**_KINKS_CASE)
    assert K.check(_KINKS, case, backend, K.F64) == []  # lossc: 0, the convention's
    _wrong(monkeypatch, 0, value=-2.0 * -1 / 3)  # the true derivative: accepted as well
    assert K.check(_KINKS, case, backend, K.F64) == []
    _wrong(monkeypatch, 0, value=2.0)
    assert [m.what for m in K.check(_KINKS, case, backend, K.F64)] == ["grad"]


def test_convention_rule_catches_abs_reported_as_2():
    """abs'(0) reported as 2 where abs sits at its kink inside a differentiable loss (f + abs(f) - pos(f) -
    pos(-f) = f): true and convention gradients are both 1."""
    f = G.leaf("f")
    ret = G.bin_("sub", G.bin_("sub", G.bin_("add", f, G.fn("abs", f)), G.fn("pos", f)),
                 G.fn("pos", G.Node("neg", (f,))))
    loss = _loss("binary", ret)
    case = K.Case(x=[0.0], shape=[1], target=[1.0], reduction="sum")
    t = K.truth(loss, case, K.F64)
    assert t.grad == [1.0] and t.grad_alt == [1.0]
    real = K.run_backend
    try:
        K.run_backend = lambda *a: (real(*a)[0], [2.0])
        assert [m.what for m in K.check(loss, case, "reference", K.F64, expected=t)] == ["grad"]
    finally:
        K.run_backend = real
