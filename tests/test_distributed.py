"""batch_group: an AnyLoss F1 computed on 2 ranks (gloo, CPU, float64) equals the full-batch loss, and each
rank's input gradient is the full-batch gradient restricted to its inputs (both backends)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def _worker(rank: int, init_file: str, result_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import lossc
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(37, generator=g, dtype=torch.float64) * 2.0   # logits, odd N split 19 / 18
        y = (torch.rand(37, generator=g) < 0.4).double()
        w = torch.rand(37, generator=g, dtype=torch.float64) + 0.5
        part = slice(0, 19) if rank == 0 else slice(19, 37)
        out = {}
        for backend in ("torch", "reference"):
            module = lossc.loss("anyloss_f1", backend=backend, from_logits=True, L=10.0, batch_group=dist.group.WORLD)
            leaf = x[part].clone().requires_grad_(True)
            value = module(leaf, y[part], sample_weight=w[part])
            (value * 1.7).backward()
            out[backend] = (value.detach(), leaf.grad)
        torch.save(out, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_anyloss_f1_on_two_ranks_equals_the_full_batch():
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import lossc
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True,
                           start_method="spawn")
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, generator=g, dtype=torch.float64) * 2.0
    y = (torch.rand(37, generator=g) < 0.4).double()
    w = torch.rand(37, generator=g, dtype=torch.float64) + 0.5
    leaf = x.clone().requires_grad_(True)
    full = lossc.loss("anyloss_f1", backend="torch", from_logits=True, L=10.0)(leaf, y, sample_weight=w)
    (full * 1.7).backward()
    for backend in ("torch", "reference"):
        for rank in range(WORLD):
            torch.testing.assert_close(results[rank][backend][0], full.detach(), rtol=1e-12, atol=1e-14)
        grad = torch.cat([results[0][backend][1], results[1][backend][1]])
        torch.testing.assert_close(grad, leaf.grad, rtol=1e-10, atol=1e-14)
    # and the distributed loss is not the local one: the test can fail
    local = lossc.loss("anyloss_f1", from_logits=True, L=10.0)(x[:19], y[:19], sample_weight=w[:19])
    assert abs(float(local) - float(full.detach())) > 1e-3
