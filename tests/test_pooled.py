"""The fused torch programs write every operation into the buffers of a pool (printers/torch.py,
``pooled_program``). They must compute exactly what the nested expressions they come from compute: for
every row and elementwise catalog loss, the module generated with the pool and the one generated without
it give bit-identical losses and gradients (float32 and float64, one chunk and chunks of 3 rows, class
weights, ignored rows, every reduction)."""

from __future__ import annotations

import re

import pytest
import torch

import lossc
import lossc.printers.torch as torch_printer
from lossc.api import _load
from lossc.codegen import class_name, generate_module
from conftest import MULTICLASS, REFERENCES, generator, make_input

NAMES = sorted(e.name for e in lossc.catalog() if e.name in REFERENCES and lossc.parse(e.name).form in
               ("row", "elementwise"))


def _modules(name, monkeypatch):
    spec = lossc.parse(name)
    pooled = lossc.module(name)
    with monkeypatch.context() as m:
        m.setattr(torch_printer, "pooled_program", lambda prog, spec: prog)
        text = generate_module(spec, "torch")
    assert "_buffers(_pool" not in text and "_buffers(_pool" in lossc.generate(name)  # (nested vs pooled)
    return pooled, _load(text, f"{spec.name}_nested")


def _run(mod, name, x, t, reduction, options, chunk):
    kernel = mod.KERNEL
    kernel.chunk, saved = chunk or kernel.chunk, kernel.chunk
    try:
        loss = getattr(mod, class_name(name))(reduction=reduction, **options, **REFERENCES[name].params)
        leaf = x.detach().clone().requires_grad_(True)
        value = loss(leaf, t)
        value.sum().backward()
        return value.detach(), leaf.grad
    finally:
        kernel.chunk = saved


@pytest.mark.parametrize("name", NAMES)
def test_pooled_programs_compute_exactly_what_the_nested_ones_do(name, monkeypatch):
    pooled, nested = _modules(name, monkeypatch)
    kind = REFERENCES[name].kind
    shape = (23, 6) if kind in (MULTICLASS, "distribution") else (5, 9)
    g = generator("pooled", name)
    x, t = make_input(kind, shape, g)
    options = {}
    if kind == MULTICLASS:
        t = t.clone()
        t[::4] = -100
        options["weight"] = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5
    for dtype in (torch.float64, torch.float32):
        xd = x.to(dtype)
        td = t if kind == MULTICLASS else t.to(dtype)
        for reduction in ("none", "mean"):
            for chunk in (None, 3 * shape[1]):
                a = _run(pooled, name, xd, td, reduction, options, chunk)
                b = _run(nested, name, xd, td, reduction, options, chunk)
                assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), (dtype, reduction, chunk)


WHERE_OF_TRUTHS = ("loss a(N = -0.25, x = 0.5) over distribution:\n    t = log1p(pos(logsumexp(z)))\n"
                   "    return (2 + where(t <= 1, t, min(x, where(N >= 0.5, 0.5, C))))^(0.5)\n")


@pytest.mark.parametrize("N,x", [(-0.25, 0.5), (1.0, 0.25), (-1.0, 5.0)])
def test_a_where_of_truth_values_of_parameters_is_a_bool(N, x):
    """The gradient's ITE(t <= 1, True, ITE(N >= 1/2, Ne(min(1/2, x), -2), Ne(min(C, x), -2))) reached the
    printers as a where of two truth values of parameters alone, which is_truth did not count as one: the
    torch printer wrote it as _constant(..) (a float tensor), the pooled program kept it in a float buffer and
    torch.where refused that buffer as its condition; the triton printer tested its float constant k as it is
    (tl.where of a non-boolean condition), not as k != 0."""
    import sympy

    from lossc.printers.torch import is_truth
    a, b, c = sympy.symbols("a b c", real=True)
    assert is_truth(sympy.Piecewise((sympy.Ne(a, 0), c > 0), (sympy.Ne(b, 0), True)))
    assert not is_truth(sympy.Piecewise((a, c > 0), (sympy.Ne(b, 0), True)))
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 3, generator=g, dtype=torch.float64) * 3
    t = torch.softmax(torch.randn(7, 3, generator=g, dtype=torch.float64), -1)
    value, grad = _run_source(WHERE_OF_TRUTHS, z, t, N=N, x=x)
    zr = z.clone().requires_grad_(True)
    s = torch.log1p(torch.relu(torch.logsumexp(zr, -1)))
    want = (2 + torch.where(s <= 1, s, torch.tensor(min(x, 0.5 if N >= 0.5 else 3.0), dtype=z.dtype))) ** 0.5
    (want_grad,) = torch.autograd.grad(want.sum(), zr)
    torch.testing.assert_close(value, want.detach())
    torch.testing.assert_close(grad, want_grad)
    lines = lossc.generate(WHERE_OF_TRUTHS, target="triton").splitlines()
    k = next(line.split("=")[0].strip() for line in lines if "!= -2" in line)  # the truth constant
    uses = [line for line in lines if "tl.where" in line and re.search(rf"\b{k}\b", line)]
    assert uses and not any(re.search(rf"\b{k}\b", line.replace(f"({k} != 0.0)", "")) for line in uses)


def _run_source(src, z, t, **params):
    leaf = z.clone().requires_grad_(True)
    value = lossc.loss(src, backend="torch", reduction="none", **params)(leaf, t)
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), grad
