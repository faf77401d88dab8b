"""Distributed misuse (gloo, CPU, 2 and 4 processes): one rank's bad input, ranks that disagree on the call,
a rank outside the group. Every case must end with the same clear LossError on every rank of the group, naming
the rank at fault, and leave the ranks in step (a valid call after all the cases still gives the right loss).

One spawned world per world size runs every case; its process group times out after 20 s, so that a
regression (a rank left waiting in an all-reduce) fails the test instead of hanging it."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

COLLECTIVE_TIMEOUT = timedelta(seconds=20)
HANG_GUARD_S = 600  # the world is killed past this (a hang, not a slow run: a normal run takes seconds)


def _at_fault(world):
    """The rank whose input is wrong: 1 of 2, 2 of 4 (neither the first nor the last rank)."""
    return 1 if world == 2 else 2


class _Boom:
    """A sample_weight whose use raises an exception that is not a LossError."""

    def detach(self):
        raise ZeroDivisionError("boom")


def _batch_cases(rank, world, alone):
    """(label, call, expected) for batch_group; expected: (error class, rank named, phrase) or "ok"."""
    import lossc
    bad = _at_fault(world)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(5, generator=g, dtype=torch.float64)
    y = (torch.rand(5, generator=g) < 0.5).double()
    p = torch.sigmoid(x)

    def f1(**kw):
        return lossc.loss("anyloss_f1", batch_group=kw.pop("group", dist.group.WORLD), **kw)

    here = rank == bad
    return [
        ("batch: a rank outside the group", lambda: f1(from_logits=True, group=alone)(x, y),
         "ok" if rank == 0 else ("LossParamError", None, "this process is not in the batch_group")),
        ("batch: a target out of range on one rank",
         lambda: f1(from_logits=True)(x, torch.where(torch.arange(5) == 3, 2.0, y) if here else y),
         ("LossInputError", bad, "target holds 2.0")),
        ("batch: a sample_weight of the wrong shape on one rank",
         lambda: f1(from_logits=True)(x, y, sample_weight=torch.ones(4 if here else 5, dtype=torch.float64)),
         ("LossInputError", bad, "sample_weight must have the shape")),
        ("batch: an unexpected exception on one rank (its own there, a LossInputError quoting it elsewhere)",
         lambda: f1(from_logits=True)(x, y, sample_weight=_Boom() if here else None),
         ("ZeroDivisionError", None, "boom") if here else ("LossInputError", bad, "ZeroDivisionError: boom")),
        ("batch: a non-probability input on one rank",
         lambda: f1()(torch.where(torch.arange(5) == 1, 1.5, p) if here else p, y),
         ("LossInputError", bad, "not a probability")),
        ("batch: float32 on one rank, float64 on the others",
         lambda: f1(from_logits=True)(x.float() if here else x, y),
         ("LossInputError", bad, "disagree on the input's dtype")),
        ("batch: the reference engine on one rank, torch on the others",
         lambda: f1(from_logits=True, backend="reference" if here else "torch")(x, y),
         ("LossInputError", bad, "disagree on the engine")),
    ]


def _class_cases(rank, world, alone):
    """(label, call, expected) for class_group: rank r holds 4 classes (rank 0: 5) of C = 4 world + 1."""
    import lossc
    bad = _at_fault(world)
    here = rank == bad
    C, width = 4 * world + 1, 4 + (rank == 0)
    g = torch.Generator().manual_seed(7)
    z = torch.randn(3, width, generator=g, dtype=torch.float64)
    t = torch.tensor([0, C - 1, 2])

    def ce(**kw):
        return lossc.loss(kw.pop("name", "cross_entropy"), class_group=kw.pop("group", dist.group.WORLD), **kw)

    spatial = torch.randn(2, width, 3, generator=g, dtype=torch.float64)   # [N, C_r, S]
    spatial_t = torch.tensor([[0, 1, C - 1], [2, 3, 4]])
    rows = spatial.movedim(1, -1).reshape(6, width)                          # [N·S, C_r]
    q = torch.full((3, width), 1.0 / C, dtype=torch.float64)
    return [
        ("class: a rank outside the group", lambda: ce(group=alone)(z, t % width),
         "ok" if rank == 0 else ("LossParamError", None, "this process is not in the class_group")),
        ("class: a target out of range on one rank", lambda: ce()(z, torch.tensor([0, C, 2]) if here else t),
         ("LossInputError", bad, f"target holds class index {C}, outside [0, {C})")),
        ("class: a block of the class weights on one rank",
         lambda: ce(weight=torch.ones(width if here else C, dtype=torch.float64))(z, t),
         ("LossInputError", bad, "weight has")),
        ("class: negative probabilities on one rank",
         lambda: ce(name="soft_cross_entropy")(z, q - 1.0 if here else q),
         ("LossInputError", bad, "negative probabilities")),
        ("class: float32 on one rank, float64 on the others", lambda: ce()(z.float() if here else z, t),
         ("LossInputError", bad, "disagree on the input's dtype")),
        ("class: [N·S, C_r] on one rank, [N, C_r, S] on the others",
         lambda: ce()(rows, spatial_t.reshape(-1)) if here else ce()(spatial, spatial_t),
         ("LossInputError", bad, "disagree on the layout")),
        ("class: the reference engine on one rank, torch on the others",
         lambda: ce(backend="reference" if here else "torch")(z, t),
         ("LossInputError", bad, "disagree on the engine")),
        ("class: the triton backend on one rank", lambda: ce(backend="triton" if here else "torch")(z, t),
         ("LossParamError", bad, "the triton backend does not take a class_group")),
        ("class: more rows on one rank", lambda: ce()(torch.cat([z, z[:1]]) if here else z,
                                                       torch.cat([t, t[:1]]) if here else t),
         ("LossInputError", bad, "disagree on the rows")),
        ("class: validate=False, a target no rank holds (on every rank)",
         lambda: ce(validate=False)(z, torch.tensor([0, C + 3, 2])),
         ("LossInputError", 0, f"target holds class index {C + 3}, outside [0, {C})")),
        ("class: validate=False, a target no rank holds (on one rank)",
         lambda: ce(validate=False)(z, torch.tensor([0, C, 2]) if here else t),
         ("LossInputError", bad, f"target holds class index {C}, outside [0, {C})")),
        ("class: a rank holding [N, 0]", lambda: ce()(z[:, :0] if here else z, t),
         ("LossInputError", bad, "must hold at least one class")),
    ]


def _still_in_step(rank, world):
    """After the cases: a valid sharded cross_entropy equals torch's on the whole rows (float64)."""
    import lossc
    C = 4 * world + 1
    g = torch.Generator().manual_seed(11)
    z = torch.randn(3, C, generator=g, dtype=torch.float64)
    t = torch.tensor([0, C - 1, 5])
    start = 0 if rank == 0 else 5 + 4 * (rank - 1)
    block = z[:, start:start + 4 + (rank == 0)].clone().requires_grad_(True)
    loss = lossc.loss("cross_entropy", class_group=dist.group.WORLD)(block, t)
    loss.backward()
    whole = z.clone().requires_grad_(True)
    truth = torch.nn.functional.cross_entropy(whole, t)
    truth.backward()
    torch.testing.assert_close(loss.detach(), truth.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(block.grad, whole.grad[:, start:start + block.shape[1]], rtol=1e-12, atol=1e-14)


def _worker(rank, world, init_file, result_dir):
    sys.path.insert(0, str(Path(__file__).parent))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=COLLECTIVE_TIMEOUT)
    outcomes = {}
    try:
        alone = dist.new_group([0])
        for label, call, _ in _batch_cases(rank, world, alone) + _class_cases(rank, world, alone):
            try:
                call()
                outcomes[label] = ("ok", "")
            except Exception as error:  # noqa: BLE001 - reported to the test
                outcomes[label] = (type(error).__name__, str(error) if type(error).__name__.startswith("Loss")
                                   else traceback.format_exc(limit=4))
            torch.save(outcomes, os.path.join(result_dir, f"rank{rank}.pt"))  # (what a crash leaves: the cases done)
        try:
            _still_in_step(rank, world)
            outcomes["in step"] = ("ok", "")
        except Exception:  # noqa: BLE001
            outcomes["in step"] = ("failed", traceback.format_exc(limit=4))
    finally:
        torch.save(outcomes, os.path.join(result_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


def _spawn(world, tmp):
    context = mp.start_processes(_worker, args=(world, os.path.join(tmp, "init"), tmp), nprocs=world, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + HANG_GUARD_S
    crash = None
    try:
        while not context.join(timeout=2):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                crash = f"the world of {world} processes hung"
                break
    except mp.ProcessExitedException as error:  # e.g. gloo aborting on mismatched all-reduces
        crash = str(error)
    results = []
    for r in range(world):
        path = os.path.join(tmp, f"rank{r}.pt")
        results.append(torch.load(path) if os.path.exists(path) else {})
    if crash:
        done = "; ".join(f"rank {r}: {list(cases)}" for r, cases in enumerate(results))
        pytest.fail(f"{crash}; the cases done: {done}")
    return results


@pytest.mark.parametrize("world", [2, 4])
def test_misuse_raises_the_same_loss_error_on_every_rank(world):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import lossc
    for backend in ("torch", "reference"):  # compiled once here: the workers read the compile cache
        for name in ("anyloss_f1", "cross_entropy", "soft_cross_entropy"):
            lossc.loss(name, backend=backend)
    with tempfile.TemporaryDirectory() as tmp:
        results = _spawn(world, tmp)
    expected = [{label: outcome for label, _, outcome in _batch_cases(r, world, None) + _class_cases(r, world, None)}
                for r in range(world)]
    problems = []
    for label in expected[0]:
        expected_here = [expected[r][label] for r in range(world)]
        got = [results[r].get(label, ("missing", "")) for r in range(world)]
        for r in range(world):
            if expected_here[r] == "ok":
                if got[r][0] != "ok":
                    problems.append(f"{label}: rank {r} raised {got[r]}")
                continue
            kind, named, phrase = expected_here[r]
            if got[r][0] != kind or phrase not in got[r][1] or named is not None and f"rank {named}" not in got[r][1]:
                problems.append(f"{label}: rank {r} expected {kind} naming rank {named} with {phrase!r}, got {got[r]}")
        group = [r for r in range(world) if expected_here[r] != "ok" and expected_here[r][1] is not None]
        if len({got[r] for r in group}) > 1:  # the same error, word for word, on every rank of the group
            problems.append(f"{label}: the ranks raised different errors: {[got[r] for r in group]}")
    for r in range(world):
        if results[r].get("in step") != ("ok", ""):
            problems.append(f"rank {r} out of step after the cases: {results[r].get('in step')}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
