"""``lossc bench``: forward + backward time and peak extra memory of a compiled loss against eager PyTorch.

Variants (one row each):

``torch`` / ``triton``
    ``lossc.loss(spec, backend=...)``: lossc's fused torch op, and its triton kernels (CUDA only).
``eager``
    ``lossc.loss(spec, backend="reference")``: the loss printed as plain torch ops and differentiated by
    autograd, the eager PyTorch a person would write for any spec, catalog or not.
``compile``
    ``torch.compile`` (inductor) of that eager module; a compile (or first call) that raises is reported
    as ``failed`` with its error, not a crash.

One step is ``x.grad = None; module(x, t).backward()`` with the mean loss. Time: on the CPU, the median of
``repeats`` steps timed with ``time.perf_counter`` after the first call (compilation included, reported
as ``first_call_s``) and one warm-up step; on CUDA, ``triton.testing.do_bench`` (median) when triton
imports, else CUDA events around ``repeats`` steps. Everything runs in this process, one variant after
the other.

Peak extra memory of one step above what is live before it (the inputs): on CUDA
``torch.cuda.max_memory_allocated``; on the CPU the resident set's high-water mark
(:func:`rss_peak_extra_bytes`, shared with ``benchmarks/cpu_bench.py``). Both include the gradient
``x.grad`` every variant must write: 1.0x the input is the floor.

Roofline: the time to read every input once and write the gradient once at the copy bandwidth
measured in the same run (``dst.copy_(src)`` of a tensor the size of the prediction: bytes read +
written per second). ``x roofline`` is a variant's time over that.
"""

from __future__ import annotations

import ctypes
import gc
import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from .errors import LossKindError, LossParamError
from .forms import Form
from .kinds import KINDS

MB = 1024 * 1024
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}
BACKENDS = ("torch", "triton", "reference", "all")


# ----------------------------------------------------------------------------------------------
# peak extra memory on the CPU: the resident set's high-water mark around one step
# ----------------------------------------------------------------------------------------------

def proc_status_kb(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_hiwater() -> bool:
    """Reset the kernel's RSS high-water mark (``VmHWM``) to the current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def pin_malloc() -> bool:
    """From now on every allocation >= 128 KiB is its own mmap (glibc's dynamic threshold off), and free
    heap pages are returned: RSS then follows the live bytes and freed memory cannot hide allocations."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_MMAP_THRESHOLD = -3
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def rss_peak_extra_bytes(step) -> tuple[int | None, str]:
    """(bytes, method): the most resident memory ``step()`` adds above the RSS before it.

    Pins malloc (:func:`pin_malloc`), reads ``VmRSS``, resets the high-water mark, runs ``step`` once and
    reads ``VmHWM``. The kernel raises the mark before anything is unmapped, so short-lived temporaries
    count. Returns (None, reason) where ``/proc/self/clear_refs`` is not writable."""
    gc.collect()
    pinned = pin_malloc()
    gc.collect()
    try:
        base_kb = proc_status_kb("VmRSS")
    except (OSError, KeyError):
        return None, "no /proc/self/status"
    if not reset_hiwater():
        return None, "/proc/self/clear_refs not writable"
    step()
    peak_kb = proc_status_kb("VmHWM")
    return ((peak_kb - base_kb) * 1024,
            "VmHWM - VmRSS around one step after clear_refs" + (", malloc pinned to mmap >= 128 KiB" if pinned else ""))


def cuda_peak_extra_bytes(step) -> tuple[int, str]:
    """(bytes, method): ``torch.cuda.max_memory_allocated`` during ``step()`` above what was allocated before."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base, "torch.cuda.max_memory_allocated above the inputs"


# ----------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------

@dataclass
class Result:
    """One variant's measurement."""

    variant: str
    what: str
    status: str = "ok"                 # "ok" | "failed" | "skipped"
    error: str = ""
    median_ms: float | None = None
    times_ms: list = field(default_factory=list)
    first_call_s: float | None = None
    peak_extra_bytes: int | None = None
    memory_method: str = ""
    loss_value: float | None = None
    x_fused: float | None = None
    x_roofline: float | None = None


@dataclass
class Bench:
    """A whole ``lossc bench`` run: what was measured, on what, and the results."""

    loss: str
    kind: str
    device: str
    device_name: str
    shape: tuple
    dtype: str
    repeats: int
    input_bytes: int                   # the prediction (logits, scores) alone
    roofline_bytes: int                # every input read once + the gradient written once
    bandwidth_gbps: float | None      # copy bandwidth, bytes read + written per second / 1e9
    fused: str                         # the variant the "x" column divides by (triton, torch or eager)
    torch_version: str = torch.__version__
    load_average: float | None = None  # 1-minute load average at the end (CPU timings need idle cores)
    cores: int | None = os.cpu_count()
    results: list = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


def parse_shape(text: str | None, form: Form, device: str) -> tuple:
    """``N,C`` (or ``N,C,d1,...``: a segmentation map's [N, C, H, W]) for the row form, ``N`` otherwise
    (``None``: the default for the form and device)."""
    if text is None:
        return dict(form.bench_shapes)[device]
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise LossParamError(f"--shape takes integers N,C[,d1,...] (row losses) or N, got {text!r}") from None
    if not form.fits(shape) or any(v <= 0 for v in shape):
        raise LossParamError(f"--shape of a {form.name}-form loss is {form.shape_text} with "
                             f"positive integers, got {text!r}")
    return shape


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _triton_ok() -> bool:
    try:
        import triton  # noqa: F401
        return True
    except ImportError:
        return False


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(nbytes: int, device: str, repeats: int = 5) -> float:
    """Bytes read + written per second by ``dst.copy_(src)`` of ``nbytes`` (median of ``repeats``)."""
    nbytes = max(int(nbytes), 1 << 20)
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src).fill_(0)  # touched: no first-touch page faults inside the timing
    times = []
    for _ in range(max(repeats, 3)):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(times)


class _ModelOutput(torch.autograd.Function):
    """The input as a fresh non-leaf tensor on the same memory, as a model's logits are: the in-place
    variants (``inplace_grad=True``) can then take a benchmark's leaf, which lossc refuses to overwrite."""

    @staticmethod
    def forward(ctx, x):
        return x.detach()

    @staticmethod
    def backward(ctx, grad):
        return grad


def model_output(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a model output on the same memory (see _ModelOutput)."""
    return _ModelOutput.apply(x)


def _variants(spec, backend: str, device: str, params: dict, inplace: bool = False) -> list[tuple[str, str, object]]:
    """(name, description, factory) of every variant to time; the factory builds the callable."""
    from . import api

    def lossc_module(b):
        return lambda: api.loss(spec, backend=b, **params)

    def lossc_inplace(b):
        def factory():
            module = api.loss(spec, backend=b, inplace_grad=True, **params)
            return lambda x, t: module(model_output(x), t)
        return factory

    out = []
    for b, what in (("torch", "lossc fused op"), ("triton", "lossc triton")):
        if backend in (b, "all"):
            out.append((b, what, lossc_module(b)))
            if inplace:
                out.append((f"{b}-inplace", what + ", inplace_grad", lossc_inplace(b)))
    out.append(("eager", "reference+autograd", lossc_module("reference")))
    out.append(("compile", "torch.compile(eager)", lambda: torch.compile(api.loss(
        spec, backend="reference", **params))))
    return out


def _time_cpu(step, repeats, progress):
    t0 = time.perf_counter()
    loss = step()
    first = time.perf_counter() - t0
    progress()
    step()  # warm-up
    progress()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - t0))
        progress()
    return first, times, loss  # (the first call's loss: on the inputs as given, also for in-place variants)


def _time_cuda(step, repeats, progress):
    t0 = time.perf_counter()
    loss = step()
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    progress()
    step()
    progress()
    if _triton_ok():
        import triton.testing
        times = [triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median")]
        progress(repeats)
        return first, times, loss
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
        progress()
    return first, times, loss


def steps_per_variant(repeats: int) -> int:
    """Progress units of one variant: first call, warm-up, ``repeats`` timed steps, the memory step."""
    return repeats + 3


def run(spec: str, *, shape: str | None = None, dtype: str = "float32", backend: str = "all", repeats: int = 10,
        params: dict | None = None, seed: int = 0, progress=None, inplace: bool = False) -> Bench:
    """Measure every variant of a loss; ``progress(n)`` (optional) is called as work units complete.
    ``inplace``: also each lossc backend with ``inplace_grad=True`` (row and elementwise losses).

    Bad input (unknown loss, kind, shape, dtype, backend) raises a ``LossError`` before anything runs."""
    from . import api
    params = dict(params or {})
    if dtype not in DTYPES:
        raise LossParamError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if backend not in BACKENDS:
        raise LossParamError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if repeats < 1:
        raise LossParamError(f"--repeats must be at least 1, got {repeats}")
    parsed = api.parse(spec, **params)
    api.loss(spec, backend="reference", **params)  # a violated `where` is bad input, not a failed variant
    if KINDS[parsed.kind].example is None:
        raise LossKindError(f"lossc bench times losses of tensors; {parsed.name} is a {parsed.kind} loss "
                            f"(it combines a few scalars: nothing to time)")
    if inplace and "inplace_grad" not in parsed.normal_form.options:
        raise LossParamError(f"--inplace times inplace_grad=True, an option of row and elementwise losses; "
                             f"{parsed.name} is a {parsed.kind} loss")
    device = _device()
    if backend == "triton" and device != "cuda":
        raise LossParamError("the triton backend runs on a CUDA GPU and none is visible",
                             hint="--backend torch times the fused torch op on the CPU")
    size = parse_shape(shape, parsed.normal_form, device)
    torch_dtype = DTYPES[dtype]
    progress = progress or (lambda n=1: None)

    g = torch.Generator(device=device).manual_seed(seed)
    x, t = KINDS[parsed.kind].example(size, torch_dtype, device, g)
    x.requires_grad_(True)
    input_bytes = x.numel() * x.element_size()
    roofline_bytes = 2 * input_bytes + t.numel() * t.element_size()
    bandwidth = copy_bandwidth(input_bytes, device)
    variants = _variants(spec, backend, device, params, inplace)
    skip_triton = device != "cuda"
    # the variant the "x" column divides by: lossc's fastest backend here, eager with --backend reference
    fused = ("triton" if backend in ("triton", "all") and not skip_triton
             else "torch" if backend in ("torch", "all") else "eager")
    bench = Bench(loss=parsed.name, kind=parsed.kind, device=device,
                  device_name=torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
                  shape=size, dtype=dtype, repeats=repeats, input_bytes=input_bytes, roofline_bytes=roofline_bytes,
                  bandwidth_gbps=bandwidth / 1e9, fused=fused)
    timer = _time_cuda if device == "cuda" else _time_cpu
    for name, what, factory in variants:
        result = Result(name, what)
        bench.results.append(result)
        if name.startswith("triton") and skip_triton:
            result.status, result.error = "skipped", "needs a CUDA GPU"
            progress(steps_per_variant(repeats))
            continue
        # an in-place variant writes the gradient over its input: it gets a copy, the others keep theirs
        own = x.detach().clone().requires_grad_(True) if name.endswith("-inplace") else x
        _measure(result, factory, own, t, repeats, device, timer, progress)
        del own
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    try:
        bench.load_average = os.getloadavg()[0]
    except OSError:
        pass
    base = next((r for r in bench.results if r.variant == fused and r.status == "ok"), None)
    roofline_ms = 1000 * roofline_bytes / bandwidth
    for r in bench.results:
        if r.status == "ok":
            r.x_fused = r.median_ms / base.median_ms if base and base.median_ms else None
            r.x_roofline = r.median_ms / roofline_ms
    return bench


def _measure(result: Result, factory, x, t, repeats, device, timer, progress) -> None:
    done = [0]

    def tick(n=1):
        done[0] += n
        progress(n)

    try:
        fn = factory()

        def step():
            x.grad = None
            loss = fn(x, t)
            loss.backward()
            return loss

        result.first_call_s, result.times_ms, loss = timer(step, repeats, tick)
        result.median_ms = statistics.median(result.times_ms)
        result.loss_value = float(loss.detach().float())
        loss = None
        x.grad = None
        if device == "cuda":
            result.peak_extra_bytes, result.memory_method = cuda_peak_extra_bytes(step)
        else:
            result.peak_extra_bytes, result.memory_method = rss_peak_extra_bytes(step)
        x.grad = None
        tick()
    except Exception as err:  # noqa: BLE001 - a torch.compile failure shows at the first call, a backend may be
        # missing (triton not installed): report it in the row, measure the others
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"[:2000]
        x.grad = None
        progress(max(steps_per_variant(repeats) - done[0], 0))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "cpu"


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------

def _shape_text(bench: Bench) -> str:
    return "x".join(map(str, bench.shape))


def table(bench: Bench):
    """The rich table of a run."""
    from rich.table import Table
    title = (f"{bench.loss} ({bench.kind}), forward + backward of the mean loss, input {_shape_text(bench)} "
             f"{bench.dtype} ({bench.input_bytes / MB:,.1f} MB) on {bench.device} ({bench.device_name})")
    tab = Table(title=title)
    for col, just in [("variant", "left"), ("what", "left"), ("ms (median)", "right"),
                      (f"x {bench.fused or 'fused'}", "right"), ("peak extra MB (x input)", "right"),
                      ("x roofline", "right"), ("first call s", "right")]:
        tab.add_column(col, justify=just)
    for r in bench.results:
        if r.status != "ok":
            colour = "red" if r.status == "failed" else "yellow"
            tab.add_row(r.variant, r.what, f"[{colour}]{r.status}[/{colour}]", "-", "-", "-", "-")
            continue
        mem = ("-" if r.peak_extra_bytes is None
               else f"{r.peak_extra_bytes / MB:,.1f} ({r.peak_extra_bytes / bench.input_bytes:.1f}x)")
        tab.add_row(r.variant, r.what, f"{r.median_ms:,.2f}", "-" if r.x_fused is None else f"{r.x_fused:.2f}",
                    mem, "-" if r.x_roofline is None else f"{r.x_roofline:.1f}", f"{r.first_call_s:.2f}")
    return tab


def notes(bench: Bench) -> list[str]:
    """The lines printed under the table: method, roofline, failures."""
    timing = ("triton.testing.do_bench median" if bench.device == "cuda" and _triton_ok()
              else f"median of {bench.repeats} steps after the first call and one warm-up")
    out = [f"time: {timing}" + (f"; x {bench.fused}: time over the {bench.fused} variant's time" if bench.fused
                                 else ""),
           f"roofline: read the inputs once + write the gradient once = {bench.roofline_bytes / MB:,.1f} MB at the "
           f"measured copy bandwidth {bench.bandwidth_gbps:,.1f} GB/s "
           f"= {1000 * bench.roofline_bytes / (bench.bandwidth_gbps * 1e9):,.3f} ms",
           "peak extra memory: above the inputs, the gradient included (1.0x the input is the floor, "
           "except with inplace_grad, which writes the gradient over the input)"]
    if bench.device == "cpu" and bench.load_average is not None and bench.cores and \
            bench.load_average > 0.5 * bench.cores:
        out.append(f"warning: load average {bench.load_average:.1f} on {bench.cores} cores: other processes "
                   f"used the CPU meanwhile, the timings are noisy")
    for r in bench.results:
        if r.status != "ok":
            out.append(f"{r.variant} {r.status}: {r.error}")
    return out
