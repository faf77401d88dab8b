"""class_group: row losses whose classes are split over ranks (vocabulary parallelism; gloo, CPU, float64).

One spawn of 3 processes runs every check: on the whole group (C = 37 as 13 + 12 + 12) and on a group of
ranks 0 and 1 (19 + 18), each rank's loss equals the unsharded loss, and each rank's gradient equals the
unsharded gradient's block of its classes, for both engines (fused torch and reference), every reduction,
ignore_index, class weights, [N, C] and [N, C, d] inputs. The workers compare against the unsharded loss
they compute themselves and report failures; the test also checks that all ranks return the same loss."""

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

WORLD = 3
C = 37
PRIOR = torch.linspace(0.2, 3.0, C, dtype=torch.float64)
# (loss, parameters, class weights given to the call)
LOSSES = [
    ("cross_entropy", {}, True),
    ("focal", {"gamma": 2.0}, False),
    ("squentropy", {}, False),
    ("label_smoothing", {"eps": 0.2}, True),
    ("brier", {}, False),
    ("nce", {}, False),
    ("crammer_singer", {}, False),
    ("logit_adjusted", {"prior": PRIOR, "tau": 0.7}, False),
    ("soft_cross_entropy", {}, True),
]


def _blocks(widths):
    edges = [0]
    for w in widths:
        edges.append(edges[-1] + w)
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def _data(name, shape):
    """Logits (with ties and one dominant class, for the max-reductions), targets and class weights."""
    g = torch.Generator().manual_seed(len(name) * 7 + len(shape))
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3.0
    x[0, 5] = x[0, 30] = x.select(1, 3)[0].max() + 1.0   # a tie across blocks in row 0
    weight = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
    if name == "soft_cross_entropy":
        t = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1)
        return x, t, weight
    t = torch.randint(0, C, (shape[0],) + shape[2:], generator=g)
    t.view(-1)[1] = -100                                      # an ignored row
    t.view(-1)[2] = 0                                         # first and last class: the block edges
    t.view(-1)[3] = C - 1
    return x, t, weight


def _run(module, x, t, weight, reduction, gout):
    leaf = x.clone().requires_grad_(True)
    value = module(leaf, t)
    (value * gout).sum().backward()
    return value.detach(), leaf.grad


def _checks(rank, groups, failures, values):
    import lossc
    for label, group, widths in groups:
        if group is None:
            continue
        me = dist.get_rank(group)
        block = _blocks(widths)[me]
        for name, params, weighted in LOSSES:
            for shape in ((11, C), (4, C, 3)):
                x, t, weight = _data(name, shape)
                local_t = t[:, block] if name == "soft_cross_entropy" else t
                for backend in ("torch", "reference"):
                    for reduction in ("mean", "sum", "none"):
                        for w in ((None, weight) if weighted else (None,)):
                            case = (label, name, shape, backend, reduction, w is not None)
                            try:
                                rows = (shape[0],) + shape[2:]
                                gout = torch.linspace(0.5, 1.5, rows[0] * (rows[1] if len(rows) > 1 else 1),
                                                      dtype=torch.float64).reshape(rows) if reduction == "none" else 1.3
                                kw = dict(backend=backend, reduction=reduction, weight=w, **params)
                                full, full_grad = _run(lossc.loss(name, **kw), x, t, w, reduction, gout)
                                mine, grad = _run(lossc.loss(name, class_group=group, **kw),
                                                  x[:, block].contiguous(), local_t, w, reduction, gout)
                                torch.testing.assert_close(mine, full, rtol=1e-12, atol=1e-13)
                                torch.testing.assert_close(grad, full_grad[:, block], rtol=1e-12, atol=1e-13)
                                values[case] = mine
                            except Exception:  # noqa: BLE001 - reported to the test
                                failures.append(f"rank {rank} {case[1]} {case[3]}: {case}\n{traceback.format_exc(limit=3)}")


def _worker(rank, init_file, result_dir):
    sys.path.insert(0, str(Path(__file__).parent))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    failures, values = [], {}
    try:
        pair = dist.new_group([0, 1])
        groups = [("3 ranks", dist.group.WORLD, [13, 12, 12]), ("2 ranks", pair if rank < 2 else None, [19, 18])]
        _checks(rank, groups, failures, values)
        _errors(rank, pair if rank < 2 else None, failures)
    finally:
        torch.save({"failures": failures, "values": values}, os.path.join(result_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


def _errors(rank, pair, failures):
    """Misuse answered by a LossError on every rank (no rank left waiting in a collective)."""
    import lossc
    checks = [
        ("a target outside the global C", lambda: lossc.loss("cross_entropy", backend="torch", class_group=dist.group.WORLD)(
            torch.zeros(2, 12 + (rank == 0), dtype=torch.float64), torch.tensor([0, C]))),
        ("the triton backend", lambda: lossc.loss("focal", backend="triton", class_group=dist.group.WORLD)(
            torch.zeros(2, 12, dtype=torch.float64), torch.tensor([0, 1]))),
        ("a loss without classes", lambda: lossc.loss("bce", class_group=dist.group.WORLD)),
        ("a block of the class weights", lambda: lossc.loss("cross_entropy", backend="torch", weight=torch.ones(12),
                                                             class_group=dist.group.WORLD)(
            torch.zeros(2, 12 + (rank == 0), dtype=torch.float64), torch.tensor([0, 1]))),
        ("ranks with different rows", lambda: lossc.loss("cross_entropy", backend="torch", class_group=dist.group.WORLD)(
            torch.zeros(2 + rank, 12, dtype=torch.float64), torch.zeros(2 + rank, dtype=torch.long))),
    ]
    for what, call in checks:
        try:
            call()
            failures.append(f"rank {rank}: {what} was accepted")
        except lossc.LossError:
            pass
        except Exception:  # noqa: BLE001
            failures.append(f"rank {rank}: {what}: {traceback.format_exc(limit=3)}")


def test_row_losses_with_classes_split_over_ranks_equal_the_unsharded_loss():
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import lossc
    for name, params, _ in LOSSES:  # compiled once here: the workers read the compile cache
        for backend in ("torch", "reference"):
            lossc.loss(name, backend=backend, **params)
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True,
                           start_method="spawn")
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
    failures = [f for r in results for f in r["failures"]]
    assert not failures, "\n".join(failures[:3]) + f"\n({len(failures)} failures: " + ", ".join(
        sorted({f.split(":")[0] for f in failures})) + ")"
    cases = results[0]["values"]
    assert len(cases) == 2 * 2 * 2 * 3 * (len(LOSSES) + sum(w for _, _, w in LOSSES))
    for case, value in cases.items():  # every rank of the group returns the same loss, to the bit
        for r in range(1, WORLD if case[0] == "3 ranks" else 2):
            assert torch.equal(results[r]["values"][case], value), case


def test_the_documented_torchrun_example_runs():
    """docs/examples/class_parallel.py (docs/distributed.md) under torchrun on 2 CPU processes with gloo."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import subprocess
    root = Path(__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(root / "docs" / "examples" / "class_parallel.py")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode and done.stdout.count("gradient of its block matches") == 2 \
            and "terminate called without an active exception" in done.stderr:
        # seen once (2026-11-28, a loaded machine): both ranks done and right, then a gloo worker thread
        # aborted at interpreter exit, after destroy_process_group (pytorch/pytorch#190489): run it again
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("gradient of its block matches") == 2, done.stdout
