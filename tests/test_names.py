"""User names never meet lossc's own: a parameter or a local called like an internal symbol (u, t, m, R1,
A1, B1, N, C, ...) or like a local of the generated code (x, out, grad, loss, r1, k0, ...) computes the
loss as written. Each case is checked, value and gradient, against a hand-written float64 reference."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lossc

# Names of lossc's internal symbols and of the generated code's locals and kernel arguments.
NAMES = ["t", "u", "m", "r", "R1", "R2", "A1", "B1", "N", "C", "x", "out", "grad", "loss", "c", "z_y", "lse",
         "p_t", "r1", "a1", "b1", "g1", "k0", "S", "L", "e", "s", "f", "q", "p", "y", "z", "yhat"]
REFUSED = ["self", "torch", "math", "P", "_pool", "input", "target", "weight", "spec", "name", "over"]
VALUE = 2.0


def _inputs(kind: str):
    g = torch.Generator().manual_seed(0)
    if kind in ("multiclass", "distribution"):
        z = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
        if kind == "multiclass":
            return z, torch.randint(0, 5, (6,), generator=g)
        return z, torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    x = torch.randn(20, generator=g, dtype=torch.float64) * 2
    if kind == "binary":
        return x, (torch.rand(20, generator=g) > 0.5).double()
    if kind == "margin":
        return x, torch.where(torch.rand(20, generator=g) > 0.5, 1.0, -1.0).double()
    if kind == "regression":
        return x, torch.randn(20, generator=g, dtype=torch.float64)
    return torch.rand(20, generator=g, dtype=torch.float64), (torch.rand(20, generator=g) > 0.5).double()


# kind -> (body using the parameter NAME, the same with a local NAME instead, reference(input, target, a))
CASES = {
    "binary": ("softplus(-f / NAME) + (1 - y) * f / NAME",
               "NAME = f / 2\n    return softplus(-NAME) + (1 - y) * NAME",
               lambda x, y, a: (F.softplus(-x / a) + (1 - y) * x / a).mean()),
    "margin": ("log1p(exp(-m / NAME)) + pos(NAME - m)",
               "NAME = m / 2\n    return log1p(exp(-NAME)) + 2 * pos(1 - NAME)",
               lambda x, y, a: (torch.log1p(torch.exp(-y * x / a)) + torch.relu(a - y * x)).mean()),
    "regression": ("NAME * r^2 / 2 + abs(yhat) / NAME",
                   "NAME = r / 2\n    return 4 * NAME^2 + abs(yhat) / 2",
                   lambda x, y, a: (a * (y - x) ** 2 / 2 + x.abs() / a).mean()),
    "multiclass": ("-log(softmax(z / NAME)[y]) + NAME * sum(softmax(z)[j]^2 for j)",
                   "NAME = z / 2\n    return -log(softmax(NAME)[y]) + 2 * sum(softmax(z)[j]^2 for j)",
                   lambda z, y, a: (F.cross_entropy(z / a, y, reduction="none")
                                    + a * (torch.softmax(z, 1) ** 2).sum(1)).mean()),
    "distribution": ("-sum(q[j] * z[j] for j) / NAME + logsumexp(z / NAME) + NAME * max(z[j] for j)",
                     "NAME = z / 2\n    return -sum(q[j] * NAME[j] for j) + logsumexp(NAME) + 2 * max(z[j] for j)",
                     lambda z, q, a: (-(q * torch.log_softmax(z / a, 1)).sum(1) + a * z.max(1).values).mean()),
    "batch": ("1 - 2 * sum(s[i] * y[i] for i) / (sum(s[i] for i) + sum(y[i] for i) + NAME) + NAME * mean(s[i]^2 for i)",
              "NAME = sum(s[i] * y[i] for i)\n    return 1 - 2 * NAME / (sum(s[i] for i) + sum(y[i] for i) + 2)"
              " + 2 * mean(s[i]^2 for i)",
              lambda s, y, a: 1 - 2 * (s * y).sum() / (s.sum() + y.sum() + a) + a * (s ** 2).mean()),
}
KIND_NAMES = {"binary": {"f", "y"}, "margin": {"m", "f", "y"}, "regression": {"yhat", "y", "r"},
              "multiclass": {"z", "y", "C", "p_t"}, "distribution": {"z", "q", "C"}, "batch": {"s", "y", "N"}}


def _check(source: str, kind: str, reference, params: dict, backend: str) -> None:
    x, y = _inputs(kind)
    module = lossc.loss(source, backend=backend, **params)
    mine = x.clone().requires_grad_(True)
    value = module(mine, y)
    (grad,) = torch.autograd.grad(value, mine)
    ref_x = x.clone().requires_grad_(True)
    expected = reference(ref_x, y, VALUE)
    (expected_grad,) = torch.autograd.grad(expected, ref_x)
    torch.testing.assert_close(value.detach(), expected.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_a_parameter_named_like_an_internal_symbol(name, kind, backend):
    body, _, reference = CASES[kind]
    source = f"loss case({name} = 1.0) over {kind}:\n    return {body.replace('NAME', name)}\n"
    if name in KIND_NAMES[kind] or (kind in ("multiclass", "distribution") and name in ("p_t",)):
        with pytest.raises(lossc.LossNameError):
            lossc.parse(source)
        return
    _check(source, kind, reference, {name: VALUE}, backend)


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_a_local_named_like_an_internal_symbol(name, kind):
    _, body, reference = CASES[kind]
    source = f"loss case() over {kind}:\n    {body.replace('NAME', name)}\n"
    inputs = KIND_NAMES[kind] - {"m", "r", "p_t"}  # (locals may rebind the sugar m, r, p_t, not the inputs)
    if name in inputs:
        with pytest.raises(lossc.LossNameError):
            lossc.parse(source)
        return
    _check(source, kind, reference, {}, "torch")


@pytest.mark.parametrize("name", ["t", "u", "R1", "A1", "x", "out", "grad", "k0", "L", "L1", "L3", "S", "s"])
def test_tasks_parameter_and_learnable_named_like_internal_symbols(name):
    other = "w" if name != "w" else "v"
    source = (f"loss case({name} = 2.0) over tasks:\n    learn {other} = 0.5\n"
              f"    return L1 / {name} + exp(-{other}) * L2 + {other}\n")
    if name in ("L", "L1", "L3"):  # the task losses' names
        with pytest.raises(lossc.LossNameError):
            lossc.loss(source)
        return
    module = lossc.loss(source, **{name: 3.0})
    l1 = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    l2 = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    value = module(l1, l2)
    value.backward()
    w = torch.tensor(0.5, dtype=torch.float64)
    torch.testing.assert_close(value.detach(), 1.5 / 3.0 + torch.exp(-w) * 0.7 + w)
    torch.testing.assert_close(l1.grad, torch.tensor(1 / 3.0, dtype=torch.float64))
    torch.testing.assert_close(l2.grad, torch.exp(-w))


@pytest.mark.parametrize("name", REFUSED)
def test_names_of_the_generated_code_and_the_api_are_refused_with_a_position(name):
    source = f"loss case({name} = 1.0) over binary:\n    return softplus(-f / {name})\n"
    with pytest.raises(lossc.LossError) as info:
        lossc.parse(source)
    assert info.value.line == 1


@pytest.mark.parametrize("name", ["p", "q"])
def test_a_per_class_parameter_may_not_make_the_row_forms_own_entries(name):
    """p[j] is softmax(z)[j] and q[j] the soft target in the row form: a per-class parameter p or q would
    make those names."""
    source = f"loss case({name}[C] = 1.0) over multiclass:\n    return -log(softmax(z)[y]) * {name}[y]\n"
    with pytest.raises(lossc.LossNameError, match="already uses"):
        lossc.parse(source)


def test_internal_symbols_are_never_user_names():
    from lossc.ir import BATCH_SIZE, T, U, is_user_name, numbered
    from lossc.kinds.margin import M
    from lossc.kinds.regression import R
    for symbol in (U, T, BATCH_SIZE, M, R, numbered("R", 1), numbered("A", 3), numbered("B", 2)):
        assert not is_user_name(symbol.name), symbol


def test_triton_under_the_interpreter_with_a_parameter_named_t():
    """The triton kernels of a binary loss with a parameter t and a multiclass one with R1 (under
    TRITON_INTERPRET=1, in a subprocess: the interpreter is chosen at import)."""
    pytest.importorskip("triton")
    code = """
import torch, torch.nn.functional as F, lossc
x = torch.randn(64, dtype=torch.float32) * 2; y = (torch.rand(64) > 0.5).float()
m = lossc.loss("loss b(t = 1.0) over binary:\\n    return softplus(-f / t) + (1 - y) * f / t\\n", backend="triton", t=2.0)
xi = x.clone().requires_grad_(True); v = m(xi, y); v.backward()
xr = x.double().clone().requires_grad_(True); r = (F.softplus(-xr / 2) + (1 - y.double()) * xr / 2).mean(); r.backward()
assert abs(v.item() - r.item()) < 1e-5, (v.item(), r.item())
assert torch.allclose(xi.grad.double(), xr.grad, atol=1e-6)
z = torch.randn(8, 7) * 2; t = torch.randint(0, 7, (8,))
m = lossc.loss("loss c(R1 = 1.0) over multiclass:\\n    return -log(softmax(z / R1)[y]) + R1 * sum(softmax(z)[j]^2 for j)\\n",
               backend="triton", R1=2.0)
zi = z.clone().requires_grad_(True); v = m(zi, t); v.backward()
zr = z.double().clone().requires_grad_(True)
r = (F.cross_entropy(zr / 2, t, reduction="none") + 2 * (torch.softmax(zr, 1) ** 2).sum(1)).mean(); r.backward()
assert abs(v.item() - r.item()) < 1e-5, (v.item(), r.item())
assert torch.allclose(zi.grad.double(), zr.grad, atol=1e-6)
src = "loss w(k = 1.0) over regression:\\n    return where(k > 0, r^2, abs(r)) + where(k > 1 and r > 0, r, 0)\\n"
x = torch.randn(30); y = torch.randn(30)
for k in (-1.0, 0.5, 2.0):  # a where on a parameter alone (issue 12: RecursionError in the torch printer)
    xi = x.clone().requires_grad_(True); v = lossc.loss(src, backend="triton", k=k)(xi, y); v.backward()
    xr = x.double().clone().requires_grad_(True); r = y.double() - xr
    ref = ((r ** 2 if k > 0 else r.abs()) + (torch.where(r > 0, r, 0.0) if k > 1 else 0)).mean(); ref.backward()
    assert abs(v.item() - ref.item()) < 1e-5 and torch.allclose(xi.grad.double(), xr.grad, atol=1e-6), k
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
