"""Parity with nn.CrossEntropyLoss itself, as a matrix: weight x ignore_index x reduction x label
smoothing x soft targets x [N, C] / [N, C, d1, d2] inputs, values and gradients in float64.

Index targets run the catalog's ``cross_entropy`` (eps = 0) or ``label_smoothing(eps)``; probability
targets run ``soft_cross_entropy(eps)`` (PyTorch has no ignore_index for them)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import lossc
from conftest import generator, run_with_grad

SHAPES = [(13, 7), (3, 5, 4, 2)]
F64 = dict(rtol=1e-10, atol=1e-12)


def _cases():
    for shape, soft, eps, weighted, ignore, reduction, backend in itertools.product(
            SHAPES, (False, True), (0.0, 0.2), (False, True), (False, True), ("none", "mean", "sum"),
            ("torch", "reference")):
        if soft and ignore:
            continue
        label = (f"{'x'.join(map(str, shape))}-{'soft' if soft else 'index'}-eps{eps}-"
                 f"{'w' if weighted else 'now'}-{'ignore' if ignore else 'all'}-{reduction}-{backend}")
        yield pytest.param(shape, soft, eps, weighted, ignore, reduction, backend, id=label)


@pytest.mark.parametrize("shape, soft, eps, weighted, ignore, reduction, backend", list(_cases()))
def test_matches_torch_cross_entropy(shape, soft, eps, weighted, ignore, reduction, backend):
    g = generator("ce parity", shape, soft, eps, weighted, ignore, reduction)
    N, C, *rest = shape
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    if soft:
        t = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 2, dim=1)
    else:
        t = torch.randint(0, C, (N, *rest), generator=g)
        if ignore:
            t = torch.where(torch.rand(t.shape, generator=g) < 0.3, torch.full_like(t, -100), t)
    weight = torch.rand(C, generator=g, dtype=torch.float64) * 2 + 0.1 if weighted else None
    out_shape = (N, *rest) if reduction == "none" else ()
    go = torch.rand(out_shape, generator=g, dtype=torch.float64) + 0.5

    if soft:
        module = lossc.loss("soft_cross_entropy", eps=eps, weight=weight, reduction=reduction, backend=backend)
    elif eps:
        module = lossc.loss("label_smoothing", eps=eps, weight=weight, reduction=reduction, backend=backend)
    else:
        module = lossc.loss("cross_entropy", weight=weight, reduction=reduction, backend=backend)
    value, grad = run_with_grad(lambda leaf: module(leaf, t), x, go)
    exp_value, exp_grad = run_with_grad(
        lambda leaf: F.cross_entropy(leaf, t, weight=weight, reduction=reduction, label_smoothing=eps), x, go)
    torch.testing.assert_close(value, exp_value, **F64)
    torch.testing.assert_close(grad, exp_grad, **F64)
