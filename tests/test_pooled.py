"""The fused torch programs write every operation into the buffers of a pool (printers/torch.py,
``pooled_program``). They must compute exactly what the nested expressions they come from compute: for
every row and elementwise catalog loss, the module generated with the pool and the one generated without
it give bit-identical losses and gradients (float32 and float64, one chunk and chunks of 3 rows, class
weights, ignored rows, every reduction)."""

from __future__ import annotations

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
