"""Differential check of generated losses (tests/genloss.py) against their mpmath truth, on every backend.

- ``make_case(loss, rng, small=False) -> Case``: inputs for one call (random, saturated |z| up to 1e4, exact
  zeros, ties, points exactly on ``where`` boundaries, N = 1, C = 2/3, [N, C, d] layouts), a reduction,
  a grad_output (0.37, or a random tensor for 'none'), class weights / sample weights now and then.
- ``check(loss, case, backend, dtype) -> list[Mismatch]``: the backend's value and input gradient against
  the truth, with per-dtype tolerances (``TOL``); a NaN/Inf where the truth is finite is always a mismatch.
- ``shrink(loss, case, backend, dtype, mismatch)``: a smaller loss and case that still fail the same way.
- ``fixture(...)`` / ``replay(obj)``: a mismatch as JSON, and its replay against the truth.

Tolerances are relative to a scale: the magnitude of the row's intermediates (the value) and of its gradient
(the gradient), times ``TOL[dtype]``. The truth is evaluated at the inputs rounded to the dtype, so only the
backend's arithmetic is judged. A row whose computation as written leaves the dtype's range (an intermediate
beyond ``BIG[dtype]``) is not compared in that dtype.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import random
import re
from dataclasses import dataclass, field

if "TRITON_INTERPRET" not in os.environ:
    try:
        import torch as _t
        if not _t.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
    except ImportError:  # pragma: no cover
        pass

import torch

import lossc
import genloss as G

F64, F32, BF16 = torch.float64, torch.float32, torch.bfloat16
DTYPES = {"float64": F64, "float32": F32, "bfloat16": BF16}
#: (relative to the value, times the running error bound in unit roundoffs): the bound is first-order, so
#: the second is a multiple (about 1e6 in float64, 1.7e3 in float32) of the unit roundoff
TOL = {F64: 1e-10, F32: 1e-4, BF16: 2e-2}
ERR = {F64: 1e-10, F32: 1e-4, BF16: 1e-4}
#: relative distance to a kink or a where boundary within which a dtype's rounding may cross it
THRESH = {F64: 1e-10, F32: 2e-4, BF16: 2e-4}
#: unit roundoff, and the factor on the reverse-mode bound (``genloss.rev_bound``) of the reference backend:
#: the bound counts each rounding once, first order; the factor covers the second-order and association slack
UNIT = {F64: 2.0 ** -53, F32: 2.0 ** -24, BF16: 2.0 ** -8}
REV_FACTOR = 2.0
BIG = {F64: 1e290, F32: 1e30, BF16: 1e30}
TINY = {F64: 1e-290, F32: 1e-30, BF16: 1e-30}
#: absolute floors: below them a value or gradient is zero for the comparison (the truth's central
#: difference has an O(h^2) = 1e-40 truncation error; float32 rounds to 0 or to a subnormal, and its
#: products of tiny numbers leave noise of 1e-30 where the truth is 0)
FLOOR = {F64: 1e-30, F32: 1e-25, BF16: 1e-25}
BACKENDS = ("reference", "torch", "triton")
#: CPU seconds a fixture's replay may take (compile and run) before it counts as a hang
REPLAY_BUDGET = 60.0
ROW_KINDS = ("multiclass", "distribution")
ELEMENTWISE = ("binary", "margin", "regression")


@dataclass
class Case:
    """One call: the input (float64 values), the target, the options and the grad_output."""

    x: list                       # nested lists (float64)
    shape: list
    target: list
    reduction: str = "mean"
    grad_output: object = 1.0     # a float, or a nested list the shape of the unreduced loss
    weight: list | None = None
    sample_weight: list | None = None
    params: dict = field(default_factory=dict)
    from_logits: bool = False

    def as_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Mismatch:
    what: str                     # 'value', 'grad', 'nonfinite', 'error'
    detail: str
    backend: str
    dtype: str

    def same(self, other: "Mismatch") -> bool:
        return (self.what, self.backend, self.dtype) == (other.what, other.backend, other.dtype) and (
            self.what != "error" or _message(self.detail) == _message(other.detail))


def _message(detail: str) -> str:
    """An error's type and message without its position (<string>:2:19:) or names."""
    return re.sub(r"<string>:\d+:\d+: ", "", re.sub(r"'[^']*'", "'…'", detail))


# ---------------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------------

_EXACT = (0.0, 0.5, 1.0, -1.0, 2.0, -0.5)


def _row_logits(rng: random.Random, C: int) -> list:
    mode = rng.choice(("normal", "normal", "wide", "saturated", "zeros", "tie", "pair", "exact"))
    if mode == "normal":
        return [rng.gauss(0, 2) for _ in range(C)]
    if mode == "wide":
        return [rng.gauss(0, 20) for _ in range(C)]
    if mode == "saturated":
        return [rng.choice((-1, 1)) * rng.uniform(0, 1e4) for _ in range(C)]
    if mode == "zeros":
        return [0.0] * C
    if mode == "tie":
        return [rng.choice(_EXACT)] * C
    if mode == "pair":
        z = [rng.gauss(0, 2) for _ in range(C)]
        z[1] = z[0]
        return z
    return [rng.choice(_EXACT) for _ in range(C)]


def _simplex(rng: random.Random, C: int) -> list:
    mode = rng.choice(("random", "random", "onehot", "zeros", "uniform"))
    if mode == "onehot":
        q = [0.0] * C
        q[rng.randrange(C)] = 1.0
        return q
    if mode == "uniform":
        return [1.0 / C] * C
    w = [rng.random() for _ in range(C)]
    if mode == "zeros":
        w[rng.randrange(C)] = 0.0
    s = sum(w) or 1.0
    return [v / s for v in w]


def _elem_value(rng: random.Random, kind: str) -> tuple[float, float]:
    """(input, target) of one element."""
    mode = rng.choice(("normal", "normal", "wide", "saturated", "exact", "zero"))
    if mode == "normal":
        x = rng.gauss(0, 2)
    elif mode == "wide":
        x = rng.gauss(0, 30)
    elif mode == "saturated":
        x = rng.choice((-1, 1)) * rng.uniform(1e2, 1e4)
    elif mode == "exact":
        x = rng.choice(_EXACT)
    else:
        x = 0.0
    if kind == "binary":
        y = float(rng.randrange(2)) if rng.random() < 0.8 else rng.choice((0.5, rng.random()))
    elif kind == "margin":
        y = rng.choice((-1.0, 1.0))
    else:  # regression: residual r = y - x exact at the ties, large now and then
        rmode = rng.choice(("normal", "exact", "large", "zero"))
        if rmode == "normal":
            y = x + rng.gauss(0, 2)
        elif rmode == "exact":
            y = rng.choice(_EXACT) + (x if mode != "saturated" and x in _EXACT else 0.0)
            if x not in _EXACT:
                x = rng.choice(_EXACT)
                y = x + rng.choice(_EXACT)
        elif rmode == "large":
            y = x + rng.choice((-1, 1)) * rng.uniform(10, 1e4)
        else:
            y = x
    return x, y


def make_case(loss: G.GeneratedLoss, rng: random.Random, small: bool = False) -> Case:
    """Random inputs and options for one call of ``loss``."""
    k = loss.kind
    red = rng.choice(("none", "sum", "mean"))
    params = _param_values(loss, rng)
    if k in ROW_KINDS:
        C = rng.choice((2, 3, 3, 5)) if not small else rng.choice((2, 3))
        N = rng.choice((1, 2, 3, 4))
        d = rng.choice((None, None, None, 2))
        rows = [_row_logits(rng, C) for _ in range(N * (d or 1))]
        if k == "multiclass":
            tgt = [rng.randrange(C) for _ in rows]
        else:
            tgt = [_simplex(rng, C) for _ in rows]
        if d is None:
            x, shape, target = rows, [N, C], tgt
        else:  # [N, C, d]: row n*d + e is x[n, :, e]
            x = [[[rows[n * d + e][c] for e in range(d)] for c in range(C)] for n in range(N)]
            shape = [N, C, d]
            target = ([[tgt[n * d + e] for e in range(d)] for n in range(N)] if k == "multiclass"
                      else [[[tgt[n * d + e][c] for e in range(d)] for c in range(C)] for n in range(N)])
        out_shape = [N] if d is None else [N, d]
        weight = ([rng.uniform(0.2, 2.0) for _ in range(C)] if k == "multiclass" and rng.random() < 0.2 else None)
        vec = [p for p, t, _ in loss.params if t == "vector"]
        for p in vec:
            params[p] = [rng.uniform(0.5, 2.0) for _ in range(C)] if rng.random() < 0.8 else 1.0
    elif k == "batch":
        n = rng.choice((1, 3, 5, 6))
        from_logits = rng.random() < 0.4
        if from_logits:
            x = [rng.choice((rng.gauss(0, 3), rng.gauss(0, 3), rng.choice(_EXACT), rng.uniform(-40, 40)))
                 for _ in range(n)]
        else:
            x = [rng.choice((rng.random(), rng.random(), 0.0, 1.0, 0.5)) for _ in range(n)]
        target = [float(rng.randrange(2)) for _ in range(n)]
        shape, out_shape = [n], []
        red = rng.choice(("sum", "mean"))
        weight = [rng.uniform(0.2, 2.0) for _ in range(n)] if rng.random() < 0.2 else None
        case = Case(x=x, shape=shape, target=target, reduction=red, grad_output=rng.choice((1.0, 0.37, -2.0)),
                    weight=weight, params=params, from_logits=from_logits)
        if rng.random() < 0.2:
            case.sample_weight = [rng.choice((0.0, rng.uniform(0.2, 2.0), 1.0)) for _ in range(n)]
            if not any(case.sample_weight):  # (a batch of weight 0 has no value: 0/0 in the truth too)
                case.sample_weight[0] = 1.0
        return case
    else:
        shape = rng.choice(([1], [3], [5], [2, 3]))
        vals = [_elem_value(rng, k) for _ in range(math.prod(shape))]
        xs, ys = [v[0] for v in vals], [v[1] for v in vals]
        x, target = _nest(xs, shape), _nest(ys, shape)
        out_shape = shape
        weight = _nest([rng.uniform(0.2, 2.0) for _ in xs], shape) if rng.random() < 0.15 else None
    go = rng.choice((1.0, 0.37, -2.0))
    if red == "none" and rng.random() < 0.6:
        go = _nest([rng.uniform(-2, 2) for _ in range(math.prod(out_shape))], out_shape)
    sw = (_nest([rng.choice((0.0, rng.uniform(0.2, 2.0), 1.0)) for _ in range(math.prod(out_shape))], out_shape)
          if rng.random() < 0.15 else None)
    return Case(x=x, shape=shape, target=target, reduction=red, grad_output=go, weight=weight, sample_weight=sw,
                params=params)


def _param_values(loss: G.GeneratedLoss, rng: random.Random) -> dict:
    """Runtime values: the defaults, given explicitly now and then (vectors are filled in by the caller)."""
    out = {}
    for p, t, v in loss.params:
        if t == "scalar" and rng.random() < 0.3:
            out[p] = v
    return out


def _nest(flat: list, shape: list):
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


# ---------------------------------------------------------------------------------------------------------
# the truth of a whole call
# ---------------------------------------------------------------------------------------------------------

def _rows(loss: G.GeneratedLoss, case: Case, x: torch.Tensor, target: torch.Tensor, dtype: torch.dtype) -> list[dict]:
    """The per-row truth inputs (floats) at x (already rounded to dtype), in the unreduced loss's order; the
    batch's sample weights rounded to dtype, its weights and the parameter vectors to the compute dtype, as the
    backend uses them."""
    k = loss.kind
    params = dict(case.params)
    held = torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype  # (the compute dtype: a class
    # vector is a parameter, held in float64 and computed with in float32 for bfloat16 inputs, not rounded to 8 bits)
    for p, t, v in loss.params:
        if t == "vector":
            val = params.get(p, 1.0)
            C = case.shape[1]
            params[p] = [float(torch.tensor(val, dtype=held).to(F64))] * C if not isinstance(val, list) else \
                torch.tensor(val, dtype=F64).to(held).to(F64).tolist()
    if k in ROW_KINDS:
        z = x.movedim(1, -1).reshape(-1, case.shape[1]).tolist()
        if k == "multiclass":
            ys = target.reshape(-1).tolist()
            return [{"z": zr, "y": yr, "params": params} for zr, yr in zip(z, ys)]
        qs = target.movedim(1, -1).reshape(-1, case.shape[1]).tolist()
        return [{"z": zr, "q": qr, "params": params} for zr, qr in zip(z, qs)]
    if k == "batch":
        w = torch.ones(len(case.x), dtype=F64)
        if case.weight is not None:  # (given to the module in float64, used in the compute dtype)
            w = w * torch.tensor(case.weight, dtype=F64).to(held).to(F64)
        if case.sample_weight is not None:  # (given with the call, in the input's dtype)
            w = w * torch.tensor(case.sample_weight, dtype=F64).to(dtype).to(F64)
        return [{"s": x.tolist(), "y": target.tolist(), "w": w.tolist(), "from_logits": case.from_logits,
                 "params": params}]
    return [{"x": xv, "y": yv, "params": params} for xv, yv in zip(x.reshape(-1).tolist(), target.reshape(-1).tolist())]


def _components(inputs: dict) -> list:
    if "z" in inputs:
        return list(inputs["z"])
    if "s" in inputs:
        return list(inputs["s"])
    return [inputs["x"]]


@dataclass
class Truth:
    value: list          # per entry of the backend's output (flattened), float or None (not comparable)
    value_tol: list
    grad: list           # per input component (flattened in the input's order), float or None (skipped)
    grad_tol: list
    finite_rows: int
    #: per component: the convention gradient (abs'(0) = pos'(0) = root'(0) = 0) where it differs from the
    #: true one only by atoms exactly at their kink, else None; a backend may match either
    grad_alt: list = None
    #: per component: the reverse-mode error allowance of eager autograd, added for the reference backend
    grad_rev_tol: list = None


def truth(loss: G.GeneratedLoss, case: Case, dtype: torch.dtype) -> Truth:
    """The expected output and input gradient of the call, at the inputs rounded to dtype."""
    x = torch.tensor(case.x, dtype=F64).to(dtype).to(F64)
    k = loss.kind
    target = torch.tensor(case.target, dtype=F64 if k != "multiclass" else torch.int64)
    if k == "distribution":
        target = target.to(dtype).to(F64)
    elif k in ELEMENTWISE or k == "batch":
        target = target.to(dtype).to(F64)
    rows = _rows(loss, case, x, target, dtype)
    tol, err, thr = TOL[dtype], ERR[dtype], THRESH[dtype]
    results = []
    for inputs in rows:
        rt = G.row_truth(loss, inputs, underflow=TINY[dtype], unit=ERR[dtype], roundoff=UNIT[dtype])
        ok = rt.scale < BIG[dtype] and rt.tiny > TINY[dtype]
        vt = float(rt.value)
        allowance = 0.0
        if rt.kink < thr or rt.tie:  # a where boundary close enough for rounding to cross (or a computed
            # quantity exactly on it, as softmax(z)[y] = 0.5 at tied logits): either side is right
            flipped = G.row_truth(loss, inputs, flip=thr, grad=False, underflow=TINY[dtype], unit=ERR[dtype])
            # (the other branch is computed in the dtype too: its own rounding counts)
            allowance = abs(float(flipped.value) - vt) + tol * abs(float(flipped.value))
        g = [float(v) for v in rt.grad]
        gmax = max((abs(v) for v in g), default=0.0)
        skip = [kk or rt.kink < thr for kk in rt.kinked]
        vscale = tol * abs(vt) + err * rt.err + allowance + (FLOOR[dtype] if dtype != F64 else 1e-280)
        # the gradient's error: relative, the derivative of the value's error bound, the truth's own noise, and a
        # floor at the value's scale over the input's (a derivative factor such as 1 - tanh^2 or expm1 + 1
        # carries an absolute rounding error of its own, whatever the size of the gradient)
        xs = _components(inputs)
        gscale = [tol * abs(gv) + err * (ge + gmax + (abs(vt) + rt.err) / (1 + abs(xk))) + 10 * gn + FLOOR[dtype]
                  for gv, ge, gn, xk in zip(g, rt.grad_err, rt.grad_noise, xs)]
        alt = [None if c is None else float(c) for c in rt.grad_conv] if rt.grad_conv else [None] * len(g)
        rev = [REV_FACTOR * UNIT[dtype] * r for r in rt.grad_rev] if rt.grad_rev else [0.0] * len(g)
        results.append((ok and math.isfinite(vt) and abs(vt) < BIG[dtype], vt, vscale, g, gscale, skip, alt, rev))
    # row factors: class weights (multiclass), sample weights; the mean's divisor
    n = len(rows)
    fac = [1.0] * n
    divisor = float(n)
    out_shape_numel = n
    if k == "multiclass" and case.weight is not None:
        w = torch.tensor(case.weight, dtype=F64).to(dtype).to(F64).tolist()
        ys = [r["y"] for r in rows]
        fac = [w[yv] for yv in ys]
        divisor = sum(fac)
    if k in ELEMENTWISE and case.weight is not None:
        fac = torch.tensor(case.weight, dtype=F64).to(dtype).to(F64).reshape(-1).tolist()
    sw = [1.0] * n
    if case.sample_weight is not None and k != "batch":
        sw = torch.tensor(case.sample_weight, dtype=F64).to(dtype).to(F64).reshape(-1).tolist()
    if k == "batch":
        ok, vt, vscale, g, gscale, skip, alt, rev = results[0]
        go = float(case.grad_output)
        value = [vt if ok else None]
        vtol = [vscale + 1e-300]
        grad = [go * gv if ok and not s else None for gv, s in zip(g, skip)]
        gtol = [abs(go) * gs + 1e-300 for gs in gscale]
        return Truth(value, vtol, grad, gtol, int(ok), [None if a is None else go * a for a in alt],
                     [abs(go) * r for r in rev])
    go = case.grad_output
    go_flat = (torch.tensor(go, dtype=F64).reshape(-1).tolist() if isinstance(go, list) else [float(go)] * n)
    if case.reduction == "mean" and k in ELEMENTWISE:
        divisor = float(n)
    scale_div = divisor if case.reduction == "mean" else 1.0
    if case.reduction == "none":
        value = [fac[i] * sw[i] * r[1] if r[0] else None for i, r in enumerate(results)]
        vtol = [abs(fac[i] * sw[i]) * r[2] + 1e-300 for i, r in enumerate(results)]
    else:
        if all(r[0] for r in results):
            total = sum(fac[i] * sw[i] * r[1] for i, r in enumerate(results)) / scale_div
            value = [total]
        else:
            value = [None]
        vtol = [sum(abs(fac[i] * sw[i]) * (r[2] + err * abs(r[1])) for i, r in enumerate(results)) / scale_div + 1e-300]
    grad, gtol = [], []
    per_row = []
    for i, (ok, vt, vscale, g, gscale, skip, alt, rev) in enumerate(results):
        c = fac[i] * sw[i] * go_flat[i] / scale_div
        per_row.append(([c * gv if ok and not s else None for gv, s in zip(g, skip)],
                        [abs(c) * gs + 1e-300 for gs in gscale],
                        [None if a is None else c * a for a in alt], [abs(c) * r for r in rev]))
    # back to the input's layout
    if k in ROW_KINDS:
        C = case.shape[1]
        gr = torch.tensor([[v if v is not None else math.nan for v in pr[0]] for pr in per_row], dtype=F64)
        gt = torch.tensor([pr[1] for pr in per_row], dtype=F64)
        shape = case.shape
        lead = [shape[0]] + shape[2:]
        gr = gr.reshape(*lead, C).movedim(-1, 1).reshape(-1)
        gt = gt.reshape(*lead, C).movedim(-1, 1).reshape(-1)
        grad = [None if math.isnan(v) else v for v in gr.tolist()]
        gtol = gt.tolist()
        ga = torch.tensor([[math.nan if v is None else v for v in pr[2]] for pr in per_row], dtype=F64)
        ga = ga.reshape(*lead, C).movedim(-1, 1).reshape(-1)
        alt = [None if math.isnan(v) else v for v in ga.tolist()]
        rv = torch.tensor([pr[3] for pr in per_row], dtype=F64).reshape(*lead, C).movedim(-1, 1).reshape(-1)
        rev = rv.tolist()
    else:
        grad = [pr[0][0] for pr in per_row]
        gtol = [pr[1][0] for pr in per_row]
        alt = [pr[2][0] for pr in per_row]
        rev = [pr[3][0] for pr in per_row]
    return Truth(value, vtol, grad, gtol, sum(1 for r in results if r[0]), alt, rev)


# ---------------------------------------------------------------------------------------------------------
# running a backend
# ---------------------------------------------------------------------------------------------------------

def _module(loss: G.GeneratedLoss, case: Case, backend: str):
    opts = dict(reduction=case.reduction, backend=backend)
    if case.weight is not None:
        opts["weight"] = torch.tensor(case.weight, dtype=F64)
    if loss.kind == "batch":
        opts["from_logits"] = case.from_logits
    declared = {p for p, _, _ in loss.params}  # (a shrunk loss may have lost parameters the call still gives)
    return lossc.loss(loss.source, **opts, **{k: v for k, v in case.params.items() if k in declared})


def run_backend(loss: G.GeneratedLoss, case: Case, backend: str, dtype: torch.dtype):
    """(flattened output, flattened input gradient) of the backend, as float64 lists."""
    module = _module(loss, case, backend)
    x = torch.tensor(case.x, dtype=F64).to(dtype).requires_grad_(True)
    if loss.kind == "multiclass":
        target = torch.tensor(case.target, dtype=torch.int64)
    else:
        target = torch.tensor(case.target, dtype=F64).to(dtype)
    kw = {}
    if case.sample_weight is not None:
        kw["sample_weight"] = torch.tensor(case.sample_weight, dtype=F64).to(dtype)
    out = module(x, target, **kw)
    go = case.grad_output
    go_t = torch.tensor(go, dtype=F64).to(out.dtype) if isinstance(go, list) else torch.full_like(out, float(go))
    if not out.requires_grad:  # a loss that reads no input (the reference backend returns a constant)
        return out.detach().to(F64).reshape(-1).tolist(), [0.0] * x.numel()
    (gx,) = torch.autograd.grad(out, x, grad_outputs=go_t)
    return out.detach().to(F64).reshape(-1).tolist(), gx.to(F64).reshape(-1).tolist()


class _OverBudget(Exception):
    pass


@contextlib.contextmanager
def cpu_budget(seconds: float | None):
    """Raise _OverBudget once the process has spent ``seconds`` of CPU time inside (None: no limit). CPU
    time, not wall time: a loaded or niced machine does not make a compile look slow."""
    if not seconds:
        yield
        return

    def over(signum, frame):
        raise _OverBudget()
    previous = signal.signal(signal.SIGPROF, over)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def check(loss: G.GeneratedLoss, case: Case, backend: str, dtype: torch.dtype, expected: Truth | None = None,
          budget: float | None = None) -> list[Mismatch]:
    """Every mismatch of one backend and dtype on one case (an empty list when it agrees). ``budget``: CPU
    seconds for compiling and running it; past them, a "hang" mismatch (the front end promises an answer
    within 10 s for any source up to 10 kB)."""
    name = str(dtype).removeprefix("torch.")
    try:
        with cpu_budget(budget):
            got_v, got_g = run_backend(loss, case, backend, dtype)
    except _OverBudget:
        return [Mismatch("hang", f"no answer within {budget} s of CPU time", backend, name)]
    except lossc.LossError as err:
        return [Mismatch("error", f"{type(err).__name__}: {str(err).splitlines()[0]}", backend, name)]
    except Exception as err:  # noqa: BLE001 - any other exception is a defect
        return [Mismatch("error", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", backend, name)]
    exp = expected or truth(loss, case, dtype)
    out = []
    n = len(exp.grad)
    alts = {"value": [None] * len(exp.value), "grad": exp.grad_alt or [None] * n}
    # the reference backend is eager autograd: its path sums carry an error of their own (genloss.rev_bound)
    rev = exp.grad_rev_tol if backend == "reference" and exp.grad_rev_tol else [0.0] * n
    gtols = [t + r for t, r in zip(exp.grad_tol, rev)]
    for what, got, want, tols in (("value", got_v, exp.value, exp.value_tol), ("grad", got_g, exp.grad, gtols)):
        for idx, (g, e, t, a) in enumerate(zip(got, want, tols, alts[what])):
            if e is None:
                continue
            if not math.isfinite(g):
                out.append(Mismatch("nonfinite", f"{what}[{idx}] = {g}, truth {e!r}", backend, name))
            elif abs(g - e) > t and (a is None or abs(g - a) > t):
                conv = "" if a is None else f", convention {a!r}"
                out.append(Mismatch(what, f"{what}[{idx}] = {g!r}, truth {e!r}{conv} (tol {t:.3g})", backend, name))
    return out


def dtypes_for(backend: str) -> tuple:
    return (F32, BF16) if backend == "triton" else (F64, F32, BF16)


# ---------------------------------------------------------------------------------------------------------
# shrinking and fixtures
# ---------------------------------------------------------------------------------------------------------

def _still_fails(loss, case, backend, dtype, first: Mismatch) -> bool:
    try:
        got = check(loss, case, backend, dtype, budget=REPLAY_BUDGET)
    except Exception:  # noqa: BLE001 - the truth itself failed on a candidate: not a valid candidate
        return False
    return any(m.same(first) for m in got)


def _smaller_cases(loss: G.GeneratedLoss, case: Case):
    """The same call on fewer rows/elements, with fewer options."""
    if case.sample_weight is not None:
        yield Case(**{**case.__dict__, "sample_weight": None})
    if case.weight is not None:
        yield Case(**{**case.__dict__, "weight": None})
    if loss.kind in ROW_KINDS and len(case.shape) == 2 and case.shape[0] > 1:
        for i in range(case.shape[0]):
            t = [case.target[i]]
            go = case.grad_output if not isinstance(case.grad_output, list) else [case.grad_output[i]]
            sw = None if case.sample_weight is None else [case.sample_weight[i]]
            yield Case(**{**case.__dict__, "x": [case.x[i]], "shape": [1, case.shape[1]], "target": t,
                          "grad_output": go, "sample_weight": sw})
    if loss.kind in ELEMENTWISE and len(case.shape) == 1 and case.shape[0] > 1:
        for i in range(case.shape[0]):
            go = case.grad_output if not isinstance(case.grad_output, list) else [case.grad_output[i]]
            sw = None if case.sample_weight is None else [case.sample_weight[i]]
            w = None if case.weight is None else [case.weight[i]]
            yield Case(**{**case.__dict__, "x": [case.x[i]], "shape": [1], "target": [case.target[i]],
                          "grad_output": go, "sample_weight": sw, "weight": w})


def shrink(loss: G.GeneratedLoss, case: Case, backend: str, dtype: torch.dtype, first: Mismatch,
           budget: int = 150) -> tuple[G.GeneratedLoss, Case]:
    """Greedy: the first smaller loss or case that still fails the same way, until none does."""
    tries = 0
    progress = True
    while progress and tries < budget:
        progress = False
        for cand in _smaller_cases(loss, case):
            tries += 1
            if _still_fails(loss, cand, backend, dtype, first):
                case, progress = cand, True
                break
        if progress:
            continue
        for cand in G.shrink_candidates(loss):
            if tries >= budget:
                break
            if G.size(cand) >= G.size(loss):
                continue
            tries += 1
            if _still_fails(cand, case, backend, dtype, first):
                loss, progress = cand, True
                break
    return loss, case


def fixture(loss: G.GeneratedLoss, case: Case, backend: str, dtype: torch.dtype, mismatches: list[Mismatch],
            xfail: str | None = None) -> dict:
    return {"source": loss.source, "loss": G.loss_to_json(loss), "case": case.as_json(), "backend": backend,
            "dtype": str(dtype).removeprefix("torch."),
            "observed": [m.__dict__ for m in mismatches], "xfail": xfail}


def replay(obj: dict) -> list[Mismatch]:
    """The mismatches a saved fixture shows today (empty once its defect is fixed)."""
    loss = G.loss_from_json(obj["loss"])
    assert loss.source == obj["source"], "the fixture's AST no longer prints its source"
    case = Case(**obj["case"])
    return check(loss, case, obj["backend"], DTYPES[obj["dtype"]], budget=REPLAY_BUDGET)


def known_defect(loss: G.GeneratedLoss, backend: str, mismatches: list[Mismatch]) -> str | None:
    """The name of a known, separately tracked defect (a key of ``genloss.AVOIDABLE``) this failure is
    attributed to. Every defect once tracked this way is fixed (its fixtures replay clean), so none is: a
    failure is new until a defect is filed here again, matched by the features of its loss
    (``genloss.features``) and what failed."""
    return None


def avoid_for(backend: str) -> tuple:
    """The known-defect constructs left out of the CI budget for a backend (each has a strict-xfail
    fixture in tests/fixtures/generated/): none open today."""
    return ()
