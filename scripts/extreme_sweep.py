"""Extreme-input sweep: every catalog loss (defaults and the tests' second setting) x backend x dtype x
reduction on saturated inputs (|logits| up to 1e4; p_t -> 0 and p_t -> 1; huge scores and residuals),
checking that the loss and its gradient are finite wherever the true value is representable in the
dtype (exp(1e4) is not: inf is the right answer there). Prints a markdown table.

    python scripts/extreme_sweep.py [--backends reference,torch,triton] [--dtypes float32,bfloat16,float16]

Without a GPU the triton kernels run under triton's interpreter (TRITON_INTERPRET=1, set here).
``tests/test_extreme_inputs.py`` runs the same cases; KNOWN lists the recorded limitations.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import lossc  # noqa: E402
from references import REFERENCES  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REDUCTIONS = ("none", "mean")
LEVELS = (20.0, 100.0, 1e4)

# (loss, setting, backend) -> why its gradient is not finite at saturation (strict xfails in the tests)
KNOWN: dict[tuple[str, str, str], str] = {}


def backends_available() -> list[str]:
    out = ["reference", "torch"]
    if importlib.util.find_spec("triton") is not None and (
            torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        out.append("triton")
    return out


def device_of(backend: str) -> str:
    return "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"


def param_sets(name: str) -> list[tuple[str, dict]]:
    ref = REFERENCES[name]
    out = [("default", dict(ref.params))]
    if ref.alt_params and ref.alt_params != ref.params:
        out.append(("alt", dict(ref.alt_params)))
    return out


def saturated_inputs(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 inputs and targets: for multiclass, rows whose target logit is +L (p_t -> 1) or -L
    (p_t -> 0) against zeros, rows of +-L with random signs (ties included) and a row of one value; for
    the elementwise kinds, scores or predictions of +-L against every target value."""
    g = torch.Generator().manual_seed(1234)
    if kind == "distribution":  # the multiclass rows against one-hot targets (odd rows smoothed)
        z, t = saturated_inputs("multiclass")
        q = torch.nn.functional.one_hot(t, z.shape[1]).double()
        q[1::2] = 0.9 * q[1::2] + 0.1 / z.shape[1]
        return z, q
    if kind == "multiclass":
        C, rows, targets = 5, [], []
        for level in LEVELS:
            for sign in (1.0, -1.0):
                row = torch.zeros(C, dtype=torch.float64)
                row[len(rows) % C] = sign * level
                rows.append(row)
                targets.append(len(targets) % C)
            rows.append(level * (torch.randint(0, 2, (C,), generator=g).double() * 2 - 1))
            targets.append(int(torch.randint(0, C, (1,), generator=g)))
        rows.append(torch.full((C,), -1e4, dtype=torch.float64))
        targets.append(2)
        return torch.stack(rows), torch.tensor(targets)
    values = {"binary": (0.0, 1.0), "margin": (-1.0, 1.0), "regression": (0.0, 1.0)}[kind]
    f = [s * level for level in LEVELS for s in (1.0, -1.0) for _ in values]
    y = [v for _ in LEVELS for _ in (1.0, -1.0) for v in values]
    return torch.tensor(f, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return loss.mean() if reduction == "mean" else loss


@dataclass
class Outcome:
    ok: bool
    detail: str


def run_case(name: str, params: dict, backend: str, dtype: torch.dtype, reduction: str) -> Outcome:
    """Forward and backward of one case; not ok when a value or gradient that should be finite is not."""
    kind = REFERENCES[name].kind
    x64, t = saturated_inputs(kind)
    device = device_of(backend)
    module = lossc.loss(name, backend=backend, reduction=reduction, **params)
    x = x64.to(dtype).to(device).requires_grad_(True)
    target = t.to(device) if kind == "multiclass" else t.to(dtype).to(device)
    value = module(x, target)
    value.backward(torch.ones_like(value))
    value, grad = value.detach().double().cpu(), x.grad.double().cpu()

    # the truth in float64 (from the rounded inputs): what must be finite is what is representable
    leaf = x64.to(dtype).double().requires_grad_(True)
    exp_value = _reduce(REFERENCES[name].fn(leaf, t, **params), reduction)
    exp_value.backward(torch.ones_like(exp_value))
    exp_value, exp_grad = exp_value.detach(), leaf.grad
    big = torch.finfo(dtype).max / 4
    need_value = ~(exp_value.abs() >= big)  # NaN (a reference artifact) counts as needed
    need_grad = ~(exp_grad.abs() >= big)
    bad_value = int((~torch.isfinite(value) & need_value).sum())
    bad_grad = int((~torch.isfinite(grad) & need_grad).sum())
    if bad_value or bad_grad:
        parts = []
        if bad_value:
            parts.append(f"loss {bad_value}/{value.numel()}")
        if bad_grad:
            parts.append(f"grad {bad_grad}/{grad.numel()}")
        return Outcome(False, "non-finite " + ", ".join(parts))
    return Outcome(True, "finite")


def cases(backends: list[str], dtypes: list[str]):
    """(name, setting, params, backend, dtype name, reduction) of every case of the sweep."""
    from lossc.codegen import triton_supported
    for name in sorted(REFERENCES):
        has_triton = triton_supported(lossc.parse(name))
        for label, params in param_sets(name):
            for backend in backends:
                if backend == "triton" and not has_triton:  # (none yet for any catalog loss)
                    continue
                for dname in dtypes:
                    for reduction in REDUCTIONS:
                        yield name, label, params, backend, dname, reduction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(backends_available()))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    args = parser.parse_args(argv)
    backends, dtypes = args.backends.split(","), args.dtypes.split(",")
    rows: dict[tuple, dict] = {}
    surprises = 0
    for name, label, params, backend, dname, reduction in cases(backends, dtypes):
        try:
            outcome = run_case(name, params, backend, DTYPES[dname], reduction)
        except Exception as err:  # noqa: BLE001 - reported in the table
            outcome = Outcome(False, f"{type(err).__name__}: {err}".splitlines()[0][:60])
        known = (name, label, backend) in KNOWN
        surprises += outcome.ok == known
        cell = "ok" if outcome.ok else ("known: " if known else "**BUG**: ") + outcome.detail
        rows.setdefault((name, label, backend, _show(params)), {})[(dname, reduction)] = cell
    columns = [(d, r) for d in dtypes for r in REDUCTIONS]
    print(f"Extreme-input sweep, {datetime.date.today()}, torch {torch.__version__}, "
          f"device: {'cuda' if torch.cuda.is_available() else 'cpu (triton interpreted)'}\n")
    print("| loss | parameters | backend | " + " | ".join(f"{d} {r}" for d, r in columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for (name, label, backend, shown), cells in rows.items():
        print(f"| {name} | {shown} | {backend} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
    print()
    for (name, label, backend), reason in KNOWN.items():
        print(f"- known, {name} ({label}) on {backend}: {reason}")
    print(f"\n{surprises} unexpected outcome(s) (a new failure, or a known one that is fixed)")
    return 1 if surprises else 0


def _show(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


if __name__ == "__main__":
    sys.exit(main())
