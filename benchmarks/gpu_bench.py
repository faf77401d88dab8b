"""GPU benchmark: lossc's triton kernels vs eager PyTorch, torch.compile and Liger-Kernel, in one run.

For each workload (a loss on a shape and dtype) and each variant this script

1. checks correctness on fresh random data first: the variant's loss and gradient on a slice of the
   workload (the same C, so the same kernel regime; at most 256 rows or 2^20 elements) against a
   float64 evaluation of the hand-written reference (``tests/references.py``); a variant that fails
   is reported ``WRONG`` and not timed;
2. times one forward + backward step (``x.grad = None; fn(x, t).backward()``, reduction "mean")
   with ``triton.testing.do_bench`` (median);
3. measures the peak extra memory of one step (``torch.cuda.max_memory_allocated`` above what the
   inputs hold; it includes the gradient ``x.grad`` every variant must produce).

Variants: ``lossc`` (``lossc.loss(name, backend="triton", validate=False)``), ``lossc_inplace`` (the same
with ``inplace_grad=True``: the gradient written over the logits; row and elementwise), ``lossc_forward``
(chunked rows only, so the LLM shape: every sweep of a row from its first class, where ``lossc`` runs
every other sweep from the row's end to meet the chunks still in L2), ``eager`` (PyTorch's
``F.cross_entropy`` for cross_entropy and label_smoothing, the hand-written reference otherwise: what a
careful user writes), ``compile`` (``torch.compile`` of exactly that eager function), ``liger``
(Liger-Kernel's cross-entropy, for cross_entropy and label_smoothing, when it imports).

× roofline: the time over the time to move the bytes a fused kernel must move, at the copy bandwidth
measured in the same run (``dst.copy_(src)`` of 2 GiB: bytes read + bytes written per second). Row
form: read the logits once + write the gradient once. Elementwise: read inputs and targets once + write
the gradient once.

Workloads: cross_entropy, focal, poly1, squentropy, label_smoothing (and any catalog row loss named
with ``--losses``) on vision 65536x1000 fp32, LLM 8192x128256 bf16, segmentation 2097152x19 fp32;
cross_entropy and focal on the same pixels as a network gives them, 8x19x512x512 fp32 (NCHW: classes
strided by H*W; eager and torch.compile run the reference on the moved [N*H*W, C] rows, as a user does);
sigmoid_focal on 76.8M logits, fp32 and bf16; anyloss_f1 (batch form: two passes, the sums then the
gradient) on 16M probabilities fp32. Besides, unless ``--no-int64``: cross_entropy on
16640x131072 bf16 (2.2e9 logits > 2^31) checked on its last rows (int64 offsets).

Usage::

    python benchmarks/gpu_bench.py                                 # everything (about 10 min on an H100)
    python benchmarks/gpu_bench.py --variants lossc,eager --workloads vision,llm
    python benchmarks/gpu_bench.py --losses brier,nce --json out.json
    python benchmarks/gpu_bench.py --chunk-sweep                   # only: the LLM row's chunk size and sweep order
    python benchmarks/gpu_bench.py --dry-run                       # tiny shapes, CPU, triton's interpreter

``--dry-run`` runs every step on tiny shapes on the CPU under ``TRITON_INTERPRET=1`` (its timings
mean nothing; peak memory is not measured; torch.compile uses the aot_eager backend): a check that
the script runs end to end.
"""

from __future__ import annotations

import os
import sys

DRY_RUN = "--dry-run" in sys.argv
if DRY_RUN:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import lossc  # noqa: E402
from lossc.bench import model_output  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
DEFAULT_ROW_LOSSES = ("cross_entropy", "focal", "poly1", "squentropy", "label_smoothing")
VARIANTS = ("lossc", "lossc_inplace", "lossc_forward", "eager", "compile", "liger")
# name -> (rows, classes, dtype), or ((N, C, H, W), dtype); the dry run's shapes keep C's regime where it
# can (the LLM row is chunked there by lowering the tile limit). segmentation-nchw: the same pixels as
# segmentation, in the layout a segmentation network gives (classes strided by H*W), for NCHW_LOSSES only
ROW_SHAPES = {"vision": (65536, 1000, torch.float32), "llm": (8192, 128256, torch.bfloat16),
              "segmentation": (2097152, 19, torch.float32),
              "segmentation-nchw": ((8, 19, 512, 512), torch.float32)}
DRY_ROW_SHAPES = {"vision": (64, 100, torch.float32), "llm": (8, 3000, torch.bfloat16),
                  "segmentation": (512, 19, torch.float32), "segmentation-nchw": ((2, 19, 8, 16), torch.float32)}
NCHW_LOSSES = ("cross_entropy", "focal")
ELEMENTWISE_SHAPES = {"detection-fp32": (76_800_000, torch.float32), "detection-bf16": (76_800_000, torch.bfloat16)}
DRY_ELEMENTWISE_SHAPES = {"detection-fp32": (5000, torch.float32), "detection-bf16": (5000, torch.bfloat16)}
BATCH_SHAPES = {"anyloss-fp32": (16_777_216, torch.float32)}
DRY_BATCH_SHAPES = {"anyloss-fp32": (5000, torch.float32)}
INT64_SHAPE = (16640, 131072)
CHECK_ROWS, CHECK_ELEMENTS = 256, 1 << 20


def _references():
    path = ROOT / "tests" / "references.py"
    spec = importlib.util.spec_from_file_location("lossc_gpu_bench_references", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return {**module.REFERENCES, **module.BATCH_REFERENCES}


REFERENCES = _references()


@dataclass
class Workload:
    loss: str
    label: str
    shape: tuple            # (N, C), (N, C, H, W) or (n,)
    dtype: torch.dtype
    kind: str               # "row" | "elementwise" | "batch"
    params: dict = field(default_factory=dict)

    @property
    def title(self):
        dt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"{self.loss} {self.label} {'x'.join(map(str, self.shape))} {dt}"

    def roofline_bytes(self, target_itemsize):
        n = 1
        for s in self.shape:
            n *= s
        size = self.dtype.itemsize if hasattr(self.dtype, "itemsize") else torch.finfo(self.dtype).bits // 8
        if self.kind == "row":
            return 2 * n * size                      # logits read once, gradient written once
        return n * (2 * size + target_itemsize)      # inputs and targets read once, gradient written once


# ----------------------------------------------------------------------------------------------
# data and variants
# ----------------------------------------------------------------------------------------------

def make_data(w: Workload, device, rows=None, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    if w.kind == "row":
        N, C, *pixels = w.shape
        N = N if rows is None else min(rows if not pixels else 1, N)  # (a check: 1 image of NCHW)
        x = torch.randn((N, C, *pixels), generator=g, device=device, dtype=torch.float32) * 2
        t = torch.randint(0, C, (N, *pixels), generator=g, device=device)
        # raise the target's logit by a random amount: confident and unconfident rows alike
        x.scatter_add_(1, t[:, None], torch.rand((N, 1, *pixels), generator=g, device=device) * 12)
        return x.to(w.dtype), t
    (n,) = w.shape
    n = n if rows is None else min(rows, n)
    x = torch.randn(n, generator=g, device=device, dtype=torch.float32) * 2
    if w.kind == "batch":  # probabilities, and a third of the labels positive
        return torch.sigmoid(x).to(w.dtype), (torch.rand(n, generator=g, device=device) < 0.3).to(w.dtype)
    t = (torch.rand(n, generator=g, device=device) < 0.1).to(w.dtype)
    return x.to(w.dtype), t


def _reference(w: Workload, x, t):
    """The hand-written reference's mean loss (batch losses: the loss of the batch, unit weights)."""
    ref = REFERENCES[w.loss]
    if w.kind == "batch":
        return ref.fn(x, t, torch.ones_like(x), **w.params)
    if x.dim() > 2:  # [N, C, H, W]: rows of classes, as a user of an [N, C] loss writes it
        x, t = x.movedim(1, -1).reshape(-1, x.shape[1]), t.reshape(-1)
    return ref.fn(x, t, **w.params).mean()


def eager_fn(w: Workload):
    if w.loss == "cross_entropy":
        return lambda x, t: F.cross_entropy(x, t)
    if w.loss == "label_smoothing":
        eps = w.params.get("eps", 0.1)
        return lambda x, t: F.cross_entropy(x, t, label_smoothing=eps)
    return lambda x, t: _reference(w, x, t)


def liger_fn(w: Workload):
    if w.loss not in ("cross_entropy", "label_smoothing") or DRY_RUN or len(w.shape) != 2:
        return None  # (Liger's cross-entropy takes [N, C] rows)
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except ImportError:
        return None
    module = LigerCrossEntropyLoss(label_smoothing=w.params.get("eps", 0.1) if w.loss == "label_smoothing" else 0.0)
    return lambda x, t: module(x, t)


def variant_fn(name, w: Workload):
    if name in ("lossc", "lossc_inplace", "lossc_forward"):
        if (name == "lossc_inplace" and w.kind == "batch") or (name == "lossc_forward" and w.label != "llm"):
            return None
        module = lossc.loss(w.loss, backend="triton", validate=False, inplace_grad=name == "lossc_inplace",
                            **w.params)
        launcher = lossc.module(w.loss, target="all", **w.params).KERNEL.triton
        if DRY_RUN and w.label == "llm":  # the chunked regime at a C the interpreter gets through
            launcher.tile_classes, launcher.chunk = 1024, 512
        if name == "lossc_inplace":
            return lambda x, t: module(model_output(x), t)
        if name == "lossc_forward":
            def forward_sweeps(x, t):
                with launcher.configured(serpentine=False):
                    return module(x, t)
            return forward_sweeps
        return lambda x, t: module(x, t)
    if name == "eager":
        return eager_fn(w)
    if name == "compile":
        return torch.compile(eager_fn(w), backend="aot_eager" if DRY_RUN else "inductor")
    if name == "liger":
        return liger_fn(w)
    raise ValueError(name)


# ----------------------------------------------------------------------------------------------
# correctness, time, memory
# ----------------------------------------------------------------------------------------------

def check(fn, w: Workload, device, seed):
    """The variant's mean loss and gradient on fresh data (a slice of the workload) vs float64 truth."""
    x, t = make_data(w, device, rows=CHECK_ROWS if w.kind == "row" else CHECK_ELEMENTS, seed=seed)
    leaf = x.detach().clone().requires_grad_(True)
    out = fn(leaf, t)
    out.backward()
    truth_leaf = x.detach().double().requires_grad_(True)
    ref = _reference(w, truth_leaf, t if w.kind == "row" else t.double())
    ref.backward()
    rtol = {torch.float32: 2e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}[w.dtype]
    value, truth = float(out.detach()), float(ref.detach())
    value_err = abs(value - truth) / max(abs(truth), 1e-12)
    grad = leaf.grad.double()
    scale = float(truth_leaf.grad.abs().max())
    grad_err = float((grad - truth_leaf.grad).abs().max()) / max(scale, 1e-30)
    ok = value_err <= rtol and grad_err <= rtol and bool(torch.isfinite(grad).all())
    return ok, f"loss {value_err:.1e}, grad {grad_err:.1e} (of max)"


def step(fn, x, t):
    x.grad = None
    fn(x, t).backward()


def time_ms(fn, x, t, device):
    if device == "cpu":
        times = []
        for _ in range(3):
            start = time.perf_counter()
            step(fn, x, t)
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    import triton.testing
    return triton.testing.do_bench(lambda: step(fn, x, t), warmup=25, rep=100, return_mode="median")


def peak_extra_mb(fn, x, t, device):
    if device == "cpu":
        return None
    x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step(fn, x, t)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / MB


def copy_bandwidth(device):
    """Bytes read + written per ms by dst.copy_(src) of 2 GiB (the roofline's bandwidth)."""
    if device == "cpu":
        src = torch.empty(1 << 24, dtype=torch.uint8)
        dst = torch.empty_like(src)
        start = time.perf_counter()
        dst.copy_(src)
        return 2 * src.numel() / ((time.perf_counter() - start) * 1e3)
    import triton.testing
    src = torch.empty(1 << 31, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    del src, dst
    torch.cuda.empty_cache()
    return 2 * (1 << 31) / ms


def int64_check(device):
    """cross_entropy on > 2^31 logits: the last rows' losses and gradients against float64."""
    N, C = INT64_SHAPE
    x = torch.randn((N, C), device=device, dtype=torch.bfloat16)
    t = torch.randint(0, C, (N,), device=device)
    x.requires_grad_(True)
    out = lossc.loss("cross_entropy", backend="triton", reduction="none", validate=False)(x, t)
    out.sum().backward()
    tail = slice(N - 4, N)
    leaf = x.detach()[tail].double().requires_grad_(True)
    ref = F.cross_entropy(leaf, t[tail], reduction="none")
    ref.sum().backward()
    value_err = float((out[tail].double() - ref).abs().max() / ref.abs().max())
    grad_err = float((x.grad[tail].double() - leaf.grad).abs().max() / leaf.grad.abs().max())
    del x, out
    torch.cuda.empty_cache()
    return value_err < 3e-2 and grad_err < 3e-2, f"loss {value_err:.1e}, grad {grad_err:.1e}"


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------

CHUNKS = (2048, 4096, 8192, 16384)


def chunk_sweep(device, bandwidth):
    """cross_entropy on the LLM shape in the chunked regime with each chunk size (so warps: 16 logits per
    thread up to 16 warps) and both sweep orders: checked, then timed. Rows: (chunk, serpentine, ms or
    status, x roofline)."""
    N, C, dtype = (DRY_ROW_SHAPES if DRY_RUN else ROW_SHAPES)["llm"]
    w = Workload("cross_entropy", "llm", (N, C), dtype, "row")
    module = lossc.loss("cross_entropy", backend="triton", validate=False)
    launcher = lossc.module("cross_entropy", target="all").KERNEL.triton
    x, t = make_data(w, device, seed=7)
    x.requires_grad_(True)
    roof_ms = w.roofline_bytes(t.element_size()) / bandwidth
    out = []
    for chunk in (c // 8 for c in CHUNKS) if DRY_RUN else CHUNKS:
        for serpentine in (True, False):
            with launcher.configured(tile_classes=w.shape[1] - 1, chunk=chunk, serpentine=serpentine):
                ok, detail = check(lambda a, b: module(a, b), w, device, seed=8)
                ms = time_ms(lambda a, b: module(a, b), x, t, device) if ok else None
            out.append((chunk, serpentine, f"{ms:.3f}" if ok else f"WRONG ({detail})",
                        f"{ms / roof_ms:.2f}×" if ok else ""))
            log(f"chunk {chunk}, serpentine {serpentine}: {out[-1][2]} ms {out[-1][3]}")
    return out


def workloads(args):
    row_shapes = DRY_ROW_SHAPES if DRY_RUN else ROW_SHAPES
    el_shapes = DRY_ELEMENTWISE_SHAPES if DRY_RUN else ELEMENTWISE_SHAPES
    batch_shapes = DRY_BATCH_SHAPES if DRY_RUN else BATCH_SHAPES
    names = list(DEFAULT_ROW_LOSSES) + [n for n in args.losses.split(",") if n and n not in DEFAULT_ROW_LOSSES]
    chosen = set(args.workloads.split(",")) if args.workloads else None
    out = []
    for label, (*shape, dtype) in row_shapes.items():
        if chosen is None or label in chosen:
            shape = tuple(shape[0]) if isinstance(shape[0], tuple) else tuple(shape)
            out += [Workload(n, label, shape, dtype, "row", dict(REFERENCES[n].params)) for n in names
                    if len(shape) == 2 or n in NCHW_LOSSES]
    for label, (n, dtype) in el_shapes.items():
        if chosen is None or label in chosen or "detection" in chosen:
            out.append(Workload("sigmoid_focal", label, (n,), dtype, "elementwise",
                                dict(REFERENCES["sigmoid_focal"].params)))
    for label, (n, dtype) in batch_shapes.items():
        if chosen is None or label in chosen:
            out.append(Workload("anyloss_f1", label, (n,), dtype, "batch", dict(REFERENCES["anyloss_f1"].params)))
    return out


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args):
    device = "cpu" if DRY_RUN else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no GPU: run with --dry-run for the CPU interpreter")
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU (triton interpreter, dry run)"
    import triton
    header = {"card": card, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "triton": triton.__version__, "lossc": lossc.__version__}
    log(f"{header}")
    bandwidth = copy_bandwidth(device)
    log(f"copy bandwidth {bandwidth / 1e9:.3f} TB/s" if device == "cuda" else "copy bandwidth (CPU)")
    if args.chunk_sweep:
        rows = chunk_sweep(device, bandwidth)
        print(f"\n{header['card']}, {header['date']}; triton {header['triton']}; cross_entropy "
              f"{'x'.join(map(str, ROW_SHAPES['llm'][:2]))} bf16, chunked regime\n")
        print("| chunk | serpentine | ms | × roofline |")
        print("|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(map(str, row)) + " |")
        return 1 if any("WRONG" in row[2] for row in rows) else 0
    variants = [v for v in args.variants.split(",") if v]
    rows = []
    for seed, w in enumerate(workloads(args)):
        for variant in variants:
            try:
                fn = variant_fn(variant, w)
            except Exception as err:  # noqa: BLE001 - one broken variant is a result, not the end
                rows.append(dict(workload=w.title, variant=variant, status=f"error: {err}"))
                continue
            if fn is None:
                continue
            record = dict(workload=w.title, variant=variant)
            try:
                ok, detail = check(fn, w, device, seed)
                record["check"] = detail
                if not ok:
                    record["status"] = "WRONG"
                    rows.append(record)
                    log(f"{w.title} {variant}: WRONG ({detail})")
                    continue
                x, t = make_data(w, device, seed=seed + 1000)
                x.requires_grad_(True)
                ms = time_ms(fn, x, t, device)
                mem = peak_extra_mb(fn, x, t, device)
                target_size = t.element_size()
                roof_ms = w.roofline_bytes(target_size) / bandwidth
                record.update(status="ok", ms=ms, roofline=ms / roof_ms, peak_mb=mem,
                              input_mb=x.numel() * x.element_size() / MB)
                del x, t
                if device == "cuda":
                    torch.cuda.empty_cache()
                log(f"{w.title} {variant}: {ms:.3f} ms, {ms / roof_ms:.2f}x roofline"
                    + ("" if mem is None else f", {mem:.0f} MB extra"))
            except Exception as err:  # noqa: BLE001
                record["status"] = f"error: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
                log(f"{w.title} {variant}: {record['status']}")
                if args.verbose:
                    traceback.print_exc()
                if device == "cuda":
                    torch.cuda.empty_cache()
            rows.append(record)
            if args.json:  # so far: a run cut at its time limit keeps what it measured
                Path(args.json).write_text(json.dumps(dict(header, bandwidth_bytes_per_ms=bandwidth, results=rows),
                                                      indent=1))
    extra = {}
    if device == "cuda" and not args.no_int64:
        try:
            ok, detail = int64_check(device)
            extra["int64"] = ("ok " if ok else "WRONG ") + detail
        except Exception as err:  # noqa: BLE001
            extra["int64"] = f"error: {err}"
        log(f"int64 offsets ({INT64_SHAPE[0]}x{INT64_SHAPE[1]} bf16): {extra['int64']}")
    print_table(header, bandwidth, rows, extra, device)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(header, bandwidth_bytes_per_ms=bandwidth, results=rows,
                                                   **extra), indent=1))
    return 1 if any(r.get("status") == "WRONG" for r in rows) or "WRONG" in extra.get("int64", "") else 0


def print_table(header, bandwidth, rows, extra, device):
    print()
    print(f"{header['card']}, {header['date']}; torch {header['torch']}, triton {header['triton']}; "
          + (f"copy bandwidth {bandwidth / 1e9:.3f} TB/s" if device == "cuda" else "dry run: timings mean nothing"))
    print()
    print("| workload | variant | ms | × roofline | peak extra memory | check |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r.get("status") != "ok":
            print(f"| {r['workload']} | {r['variant']} | {r.get('status')} | | | {r.get('check', '')} |")
            continue
        mem = "—" if r["peak_mb"] is None else f"{r['peak_mb']:.0f} MB ({r['peak_mb'] / r['input_mb']:.2f}× input)"
        print(f"| {r['workload']} | {r['variant']} | {r['ms']:.3f} | {r['roofline']:.2f}× | {mem} | {r['check']} |")
    for key, value in extra.items():
        print(f"\n{key}: {value}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU under TRITON_INTERPRET=1")
    parser.add_argument("--losses", default="", help="more catalog row losses, comma-separated")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--workloads", default="",
                        help="subset of vision,llm,segmentation,segmentation-nchw,detection-fp32,detection-bf16,"
                             "anyloss-fp32 (default all)")
    parser.add_argument("--no-int64", action="store_true", help="skip the > 2^31 logits check")
    parser.add_argument("--chunk-sweep", action="store_true",
                        help=f"only: cross_entropy on the LLM shape, chunks of {CHUNKS} x both sweep orders")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--verbose", action="store_true", help="tracebacks of failing variants")
    args = parser.parse_args(argv)
    for name in args.losses.split(","):
        if name and (name not in REFERENCES or REFERENCES[name].kind != "multiclass"):
            parser.error(f"{name} is not a catalog multiclass loss with a reference")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
