"""Every `refuted` verdict carries a counterexample, and the counterexample holds when it is evaluated
again here, independently: with the hand-written torch references (tests/references.py), not lossc's code."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import lossc
from references import REFERENCES

os.environ.setdefault("LOSSC_NO_CACHE", "1")
LOSSES = Path(__file__).parent / "fixtures" / "losses"

# hand-written references of the scratch losses
SCRATCH = {
    "crammer_singer": ("multiclass", lambda z, y: torch.relu(
        1 + z.scatter(1, y[:, None], -torch.inf).amax(1) - z.gather(1, y[:, None])[:, 0])),
    "weston_watkins": ("multiclass", lambda z, y: (torch.relu(1 + z - z.gather(1, y[:, None]))
                                                   .scatter(1, y[:, None], 0.0)).sum(1)),
    "ramp": ("margin", lambda f, y: torch.clamp(1 - y * f, 0, 2) / 2),
    "unhinged": ("margin", lambda f, y: 1 - y * f),
    "perceptron": ("margin", lambda f, y: torch.relu(-y * f)),
    "concave_kink": ("margin", lambda f, y: torch.clamp(1 - y * f, max=1)),
}

CASES = [(name, {}) for name in REFERENCES] + [
    ("focal", {"gamma": 0.5}), ("poly1", {"eps": -2.0}), ("label_smoothing", {"eps": 1.0}), ("gce", {"q": 1.0}),
    ("huber", {"delta": 0.5}), ("sigmoid_focal", {"alpha": 0.5, "gamma": 0.0}),
] + [(name, {}) for name in SCRATCH]


class Ref:
    def __init__(self, name, params):
        if name in SCRATCH:
            self.kind, fn = SCRATCH[name]
            self.fn = fn
        else:
            ref = REFERENCES[name]
            self.kind = ref.kind
            full = dict(ref.params)
            full.update(params)
            self.fn = lambda a, b: ref.fn(a, b, **full)

    def row(self, z, y):
        z = torch.as_tensor(np.atleast_2d(np.asarray(z, dtype=np.float64)))
        y = torch.as_tensor(np.atleast_1d(np.asarray(y, dtype=np.int64))).expand(z.shape[0])
        return self.fn(z, y).detach().numpy()

    def risk(self, z, q):
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        C = z.shape[1]
        return float(sum(q[k] * self.row(z, [k])[0] for k in range(C)))

    def elem(self, u, t):
        u = torch.as_tensor(np.atleast_1d(np.asarray(u, dtype=np.float64)))
        t = torch.full_like(u, float(t))
        return self.fn(u, t).detach().numpy()

    def elem_grad(self, u, t):
        u = torch.as_tensor(np.atleast_1d(np.asarray(u, dtype=np.float64))).requires_grad_(True)
        (g,) = torch.autograd.grad(self.fn(u, torch.full_like(u, float(t))).sum(), u)
        return g.numpy()

    def row_grad(self, z, y):
        z = torch.as_tensor(np.atleast_2d(np.asarray(z, dtype=np.float64))).requires_grad_(True)
        (g,) = torch.autograd.grad(self.fn(z, torch.as_tensor([y])).sum(), z)
        return g.numpy()[0]


def at(c, xs):
    """Inputs of an elementwise counterexample: input = sign * x."""
    return c["sign"] * np.asarray(xs, dtype=np.float64)


def verify(prop, c, ref: Ref):
    multi = ref.kind == "multiclass"
    if prop == "convex":
        if multi:
            a, m, b = (ref.row(c[k], [c["y"]])[0] for k in ("z_minus", "z", "z_plus"))
        else:
            a, m, b = ref.elem(at(c, [c["x"] - c["h"], c["x"], c["x"] + c["h"]]), c["target"])
        assert m > 0.5 * (a + b) + 1e-13 * (1 + abs(m))
    elif prop == "calibrated":
        if multi:
            q = np.asarray(c["q"])
            r = ref.risk(c["z"], q)
            assert r == pytest.approx(c["risk"], rel=1e-9, abs=1e-12)
            assert int(np.argmax(c["z"])) != int(np.argmax(q))
            assert r <= ref.risk(c["z_best"], q) + c["tolerance"]
        else:
            e, f = c["eta"], c["f"]
            tp, tm = c["targets"]
            risk = e * ref.elem([f], tp)[0] + (1 - e) * ref.elem([f], tm)[0]
            assert risk == pytest.approx(c["risk"], rel=1e-7, abs=1e-12)
            assert f * (2 * e - 1) <= 0 and risk <= c["best_right_sign"] + 1e-12
    elif prop == "proper":
        if multi:
            q = np.asarray(c["q"])
            assert ref.risk(c["z"], q) < ref.risk(c["z_truthful"], q) - 1e-10
        else:
            e = c["eta"]
            C = lambda f: e * ref.elem([f], 1.0)[0] + (1 - e) * ref.elem([f], 0.0)[0]  # noqa: E731
            assert C(c["f"]) < C(c["f_truthful"]) - 1e-10
    elif prop == "symmetric":
        if multi:
            s1, s2 = (sum(ref.row(c[k], [j])[0] for j in range(c["C"])) for k in ("z1", "z2"))
        else:
            tp, tm = (1.0, -1.0) if ref.kind == "margin" else (1.0, 0.0)
            s1, s2 = (ref.elem([c[k]], tp)[0] + ref.elem([c[k]], tm)[0] for k in ("f1", "f2"))
        assert abs(s1 - s2) > 1e-8 * (1 + abs(s1))
    elif prop == "bounded":
        if multi and "direction" in c:
            vals = [ref.row([s * v for v in c["direction"]], [c["y"]])[0] for s in c["s"]]
        elif multi:
            vals = [ref.row(z, [c["y"]])[0] for z in c["z"]]
        else:
            vals = list(ref.elem(at(c, c["x"]), c["target"]))
        assert np.all(np.diff(np.abs(vals)) > 0) and abs(vals[-1]) > 10 * abs(vals[0])
        assert c["limit"] in ("oo", "-oo")
    elif prop == "monotone":
        if multi and "z1" in c:
            l1, l2 = ref.row(c["z1"], [c["y"]])[0], ref.row(c["z2"], [c["y"]])[0]
            p1, p2 = (np.exp(np.asarray(z)[c["y"]] - np.logaddexp.reduce(z)) for z in (c["z1"], c["z2"]))
            assert p2 > p1 and l2 > l1
        elif multi:
            z2 = np.array(c["z"])
            z2[c["y"]] += c["h"]
            assert ref.row(z2, [c["y"]])[0] > ref.row(c["z"], [c["y"]])[0]
        else:
            l1, l2 = ref.elem(at(c, [c["x1"], c["x2"]]), c["target"])
            assert l1 == pytest.approx(c["L1"], rel=1e-9, abs=1e-12) and l2 == pytest.approx(c["L2"], rel=1e-9, abs=1e-12)
            assert l1 != l2
    elif prop == "smooth":
        if multi:
            g1, g2 = ref.row_grad(c["z1"], c["y"]), ref.row_grad(c["z2"], c["y"])
            assert np.linalg.norm(np.subtract(c["z1"], c["z2"])) < 1e-6
            assert np.linalg.norm(g1 - g2) > 1e-3
        elif "kink" in c:
            g1, g2 = (c["sign"] * ref.elem_grad(at(c, [v]), c["target"])[0] for v in (c["x1"], c["x2"]))
            assert abs(c["x1"] - c["x2"]) < 1e-6 and abs(g1 - g2) > 1e-3
        else:
            ratios = []
            for a in c["a"]:
                s = 1 if a > 0 else -1
                g1, g2 = (c["sign"] * ref.elem_grad(at(c, [v]), c["target"])[0] for v in (a, a + s * c["h"]))
                ratios.append(abs(g2 - g1) / c["h"])
            assert np.all(np.diff(ratios) > 0) and ratios[-1] > 1e6
    elif prop == "nonnegative":
        value = ref.row(c["z"], [c["y"]])[0] if multi else ref.elem(at(c, [c["x"]]), c["target"])[0]
        assert value < 0
    elif prop == "stable":
        f = c["failures"][0]
        assert isinstance(f, dict), f
        module = lossc.loss(NAME_OF[id(c)], backend=f["backend"], reduction="none", **PARAMS_OF[id(c)])
        dtype = getattr(torch, f["dtype"])
        x = torch.tensor([f["x"]], dtype=torch.float64).to(dtype).requires_grad_(True)
        t = torch.tensor([f["target"]]) if multi else torch.tensor([f["target"]], dtype=dtype)
        out = module(x, t)
        (g,) = torch.autograd.grad(out.float().sum(), x)
        bad = not torch.isfinite(out).all() if f["what"] == "loss" else not torch.isfinite(g).all()
        assert bad
    else:
        raise AssertionError(f"no verifier for {prop}")


NAME_OF, PARAMS_OF = {}, {}
VERIFIED: list = []


@pytest.mark.parametrize("name, params", CASES, ids=[f"{n}-{p}" if p else n for n, p in CASES])
def test_every_refutation_reverifies(name, params):
    spec = str(LOSSES / f"{name}.loss") if name in SCRATCH else name
    report = lossc.check(spec, **params)
    ref = Ref(name, params)
    refuted = [(k, v) for k, v in report.items() if v.verdict == "refuted"]
    VERIFIED.extend(prop for prop, _ in refuted)
    for prop, v in refuted:
        assert v.counterexample, f"{prop}: refuted without a counterexample"
        NAME_OF[id(v.counterexample)], PARAMS_OF[id(v.counterexample)] = spec, params
        verify(prop, v.counterexample, ref)


def test_proved_verdicts_carry_no_counterexample_and_say_why():
    for entry in lossc.catalog():
        for name, v in lossc.check(entry.name).items():
            if v.verdict == "proved":
                assert v.counterexample is None and len(v.evidence) > 20
