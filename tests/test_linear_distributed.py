"""lossc.linear_loss with class_group: the head's weight split by rows (the vocabulary) over 2 and 4 ranks
(gloo, CPU, float64). On every rank: the loss equals the one-process loss, d hidden the one-process d hidden,
and d weight / d bias the one-process gradients' block of its rows; for mean and none, class weights,
ignore_index, soft targets (each rank passes its block of the probabilities, as class_group's row losses
take them). The one-process truth is F.linear + the unfused module (reference backend)."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

V, D, N = 29, 5, 13
WIDTHS = {2: [15, 14], 4: [8, 7, 7, 7]}
LOSSES = [("cross_entropy", {}, True), ("focal", {"gamma": 2.0}, False), ("ce_zloss", {"beta": 0.01}, False),
          ("label_smoothing", {}, True), ("crammer_singer", {}, False), ("soft_cross_entropy", {}, False)]


def _data(name):
    g = torch.Generator().manual_seed(len(name))
    h = torch.randn(N, D, generator=g, dtype=torch.float64)
    W = torch.randn(V, D, generator=g, dtype=torch.float64)
    b = torch.randn(V, generator=g, dtype=torch.float64)
    weight = torch.rand(V, generator=g, dtype=torch.float64) + 0.5
    if name == "soft_cross_entropy":
        return h, W, b, torch.softmax(torch.randn(N, V, generator=g, dtype=torch.float64), 1), weight
    t = torch.randint(0, V, (N,), generator=g)
    t[1], t[2], t[3] = -100, 0, V - 1  # an ignored row; the first and last class (block edges)
    return h, W, b, t, weight


def _checks(rank, world, failures):
    import torch.nn.functional as F
    import lossc
    widths = WIDTHS[world]
    start = sum(widths[:rank])
    rows = slice(start, start + widths[rank])
    for name, params, weighted in LOSSES:
        h, W, b, t, weight = _data(name)
        options = dict(ignore_index=-100) if name != "soft_cross_entropy" else {}
        for reduction in ("mean", "none"):
            for w in ([None, weight] if weighted else [None]):
                case = f"rank {rank}/{world} {name} {reduction} weight={w is not None}"
                try:
                    hf, Wf, bf = (x.clone().requires_grad_() for x in (h, W, b))
                    unfused = lossc.loss(name, backend="reference", reduction=reduction, weight=w, **options,
                                         **params)
                    want = unfused(F.linear(hf, Wf, bf), t)
                    go = torch.linspace(-1.0, 2.0, N, dtype=torch.float64) if reduction == "none" else 0.6
                    want_g = torch.autograd.grad(want, (hf, Wf, bf), torch.as_tensor(go, dtype=torch.float64))
                    hs, Ws, bs = (x.clone().requires_grad_() for x in (h, W[rows], b[rows]))
                    ts = t[:, rows] if t.is_floating_point() else t  # (probabilities: this rank's block)
                    got = lossc.linear_loss(name, hs, Ws, ts, bs, reduction=reduction, weight_per_class=w, chunk=4,
                                            class_group=dist.group.WORLD, **options, **params)
                    got_g = torch.autograd.grad(got, (hs, Ws, bs), torch.as_tensor(go, dtype=torch.float64))
                    pairs = [("loss", got, want), ("d hidden", got_g[0], want_g[0]),
                             ("d weight", got_g[1], want_g[1][rows]), ("d bias", got_g[2], want_g[2][rows])]
                    for what, a, c in pairs:
                        if not torch.allclose(a, c, rtol=1e-11, atol=1e-12):
                            failures.append(f"{case}: {what} off by {(a - c).abs().max().item():.3g}")
                except Exception:  # noqa: BLE001
                    failures.append(f"{case}: {traceback.format_exc(limit=4)}")


def _worker(rank, world, init_file, result_dir):
    sys.path.insert(0, str(Path(__file__).parent))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    failures: list[str] = []
    try:
        _checks(rank, world, failures)
        import lossc
        try:  # a block of weight_per_class (not the whole vector) is refused on every rank
            lossc.linear_loss("cross_entropy", torch.zeros(2, D, dtype=torch.float64),
                              torch.zeros(WIDTHS[world][rank], D, dtype=torch.float64), torch.tensor([0, 1]),
                              weight_per_class=torch.ones(WIDTHS[world][rank], dtype=torch.float64),
                              class_group=dist.group.WORLD)
            failures.append(f"rank {rank}: a block of weight_per_class was accepted")
        except lossc.LossError:
            pass
    finally:
        torch.save(failures, os.path.join(result_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 4])
def test_vocabulary_parallel_linear_loss_equals_one_process(world):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import lossc
    for name, params, _ in LOSSES:  # compiled once here: the workers read the compile cache
        lossc.loss(name, backend="torch", **params)
        lossc.loss(name, backend="reference", **params)
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_worker, args=(world, os.path.join(tmp, "init"), tmp), nprocs=world, join=True,
                           start_method="spawn")
        failures = [f for r in range(world) for f in torch.load(os.path.join(tmp, f"rank{r}.pt"))]
    assert not failures, "\n".join(failures[:4]) + f"\n({len(failures)} failures)"
