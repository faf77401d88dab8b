"""CPU benchmark: lossc's fused torch backend vs eager PyTorch vs torch.compile.

For every catalog loss of kind ``multiclass`` (row form: logits [N, C], integer
targets [N]) this times one forward + backward pass of the *mean* loss and
measures its peak extra memory, for three implementations:

``fused``
    ``lossc.loss(name, backend="torch")`` with its catalog defaults: the fused
    op whose forward computes loss and gradient chunk by chunk of rows.
``fused_inplace`` (only when asked for with ``--variants``)
    The same with ``inplace_grad=True``: the gradient written over the logits
    (which the worker passes as a model output on the same memory).
``eager``
    The hand-written reference of ``tests/references.py``:
    ``REFERENCES[name].fn(logits, target, **REFERENCES[name].params).mean()``
    run under ordinary autograd.
``compile``
    ``torch.compile`` (default mode, inductor) of exactly that eager function.
    It is compiled once, warmed up, then timed; a loss whose compile (or first
    run) raises is reported as ``failed``, not as a crash of the benchmark.

Method
------
Every (loss, implementation) pair runs in its own fresh Python subprocess
(``--worker``), one at a time, so that nothing (allocator state, inductor
caches in memory, a crash) leaks from one measurement into another.

Time: one step is ``logits.grad = None; fn(logits, target).backward()``.
After the first call (which for ``compile`` includes compilation; reported
separately as ``first_call_s`` in the JSON) and ``--warmup`` more steps,
``--repeats`` steps are timed with ``time.perf_counter`` and the median is
reported. Torch uses its default intra-op thread count (one per core).
The worker also counts the minor page faults during the timed steps
(``faulted MB/step``: memory the step touched for the first time, which the
kernel must hand out zeroed): with glibc's allocator, buffers of megabytes are
often mmapped (or trimmed) on every allocation, and on a VM these first touches
can cost as much as the arithmetic, so this column explains many of the times.
Timings are only meaningful on otherwise idle cores: before each measurement
the driver waits (up to ``--quiet-wait`` seconds) for the machine's cores to
be idle (from ``/proc/stat``), and each worker records, over its timed steps,
the CPU seconds it got per wall second (``cpu_per_wall``) and those the rest
of the machine used (``others_per_wall``: all cores' busy time from
``/proc/stat`` minus its own). A measurement during which other processes used
more than 0.2 cores is repeated (``--retries`` times at most) and the least
disturbed attempt is kept; the table warns about any that still look contended.

Peak extra memory: measured on the process's resident set size (RSS), which on
CPU is where every tensor lives. After timing, the worker drops all results,
pins glibc's mmap threshold at 128 KiB (``mallopt(M_MMAP_THRESHOLD)``, which
also turns off its dynamic adjustment) and calls ``malloc_trim(0)``, so that
from then on every tensor buffer of 128 KiB or more is its own mmap, unmapped on
free: RSS follows the live bytes and freed memory cannot hide later
allocations. It then reads the baseline ``VmRSS`` (logits and targets are
already allocated), resets the kernel's RSS high-water mark (``echo 5 >
/proc/self/clear_refs``), runs ONE forward + backward step, and reports
``VmHWM - baseline``. The kernel updates the high-water mark before it unmaps
anything, so short-lived temporaries are counted too. The number therefore
includes everything the step allocates and holds at its worst moment: saved
activations, temporaries, and the gradient ``logits.grad`` itself (an [N, C]
tensor, exactly the size of the logits, which every implementation must
produce). It is shown in MB (MiB: 2**20 bytes, here and in the whole table)
and as a multiple of the logits' own size (``1.0x`` = one more logits-sized
tensor), so ``1.0x`` is the floor for any implementation that materialises the
gradient. (If ``/proc/self/clear_refs`` is not writable, the worker falls
back to ``ru_maxrss`` of a fresh subprocess whose first step is the measured
one, which for ``compile`` includes compilation; the JSON records the method.)

Provenance: the JSON and the table record a hash of the lossc sources
(``lossc/``, ``templates/``, ``grammar/``, ``catalog/``) and, per loss, of the
module lossc generates (``lossc.generate(name)``, which holds the runtime
verbatim: exactly the code the fused variant runs), before the run, in the
fused worker and after the run; the table warns when a loss's generated code
changed meanwhile.

Usage::

    python benchmarks/cpu_bench.py                       # 4096x32000, every multiclass loss
    python benchmarks/cpu_bench.py --shape 1024,32000 --losses cross_entropy,focal --repeats 3
    python benchmarks/cpu_bench.py --repeats 3 --json results.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the lossc of this checkout (lossc_fingerprint hashes its sources)

from lossc.bench import proc_status_kb, reset_hiwater, rss_peak_extra_bytes  # noqa: E402

VARIANTS = ("fused", "fused_inplace", "eager", "compile")
DEFAULT_VARIANTS = ("fused", "eager", "compile")
RESULT_MARK = "@@CPU_BENCH_RESULT "
MB = 1024 * 1024
CONTENDED = 0.2  # a timed run is suspect when other processes used > this many cores meanwhile


# ----------------------------------------------------------------------------------------------
# worker: one (loss, implementation) measurement, in its own process
# ----------------------------------------------------------------------------------------------

def lossc_fingerprint():
    """A short hash of the sources lossc compiles from (lossc/, templates/, grammar/, catalog/), so that
    results can be tied to one version of the compiler (and a run mixing versions is noticed)."""
    import hashlib
    h = hashlib.sha256()
    for folder in ("lossc", "templates", "grammar", "catalog"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def generated_hash(name):
    """A short hash of the module lossc generates for a loss: the code the fused variant runs
    (the runtime is copied into it verbatim), so it pins down what was measured."""
    import hashlib
    import lossc
    return hashlib.sha256(lossc.generate(name).encode()).hexdigest()[:12]


def _references():
    path = ROOT / "tests" / "references.py"
    spec = importlib.util.spec_from_file_location("lossc_bench_references", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module.REFERENCES


def _machine_busy_seconds():
    """CPU seconds all cores have spent busy since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _make_fn(torch, name, variant):
    if variant in ("fused", "fused_inplace"):
        import lossc
        if variant == "fused_inplace":
            from lossc.bench import model_output
            module = lossc.loss(name, backend="torch", inplace_grad=True)
            return lambda x, t: module(model_output(x), t)
        module = lossc.loss(name, backend="torch")
        return lambda x, t: module(x, t)
    ref = _references()[name]
    params = dict(ref.params)

    def eager(x, t):
        return ref.fn(x, t, **params).mean()
    if variant == "eager":
        return eager
    return torch.compile(eager)


def worker(name, variant, N, C, repeats, warmup, seed):
    import torch
    out = {"loss": name, "variant": variant, "threads": torch.get_num_threads(), "lossc": lossc_fingerprint()}
    torch.manual_seed(seed)
    logits = torch.randn(N, C, dtype=torch.float32).requires_grad_()
    target = torch.randint(0, C, (N,), dtype=torch.int64)
    maxrss_fresh_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_fresh_kb = proc_status_kb("VmRSS")
    can_reset = reset_hiwater()

    try:
        fn = _make_fn(torch, name, variant)
        if variant == "fused":
            out["generated"] = generated_hash(name)
    except Exception as err:  # noqa: BLE001 - report, do not crash
        out.update(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
        return out

    def step():
        logits.grad = None
        loss = fn(logits, target)
        loss.backward()
        return loss

    try:
        if not can_reset:
            # fallback: the first step is the memory measurement (ru_maxrss of a fresh process)
            step()
            out["peak_extra_bytes"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                       - max(maxrss_fresh_kb, rss_fresh_kb)) * 1024
            out["memory_method"] = "ru_maxrss (first step, fresh process)"
        t0 = time.perf_counter()
        loss = step()
        out["first_call_s"] = time.perf_counter() - t0
        for _ in range(warmup):
            step()
        times = []
        cpu0, wall0, busy0 = time.process_time(), time.perf_counter(), _machine_busy_seconds()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(repeats):
            t0 = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - t0)
        # CPU seconds this process got per wall second while timing: about the thread count when
        # the machine is otherwise idle, lower when other processes compete for the cores
        own, wall, busy1 = time.process_time() - cpu0, time.perf_counter() - wall0, _machine_busy_seconds()
        out["cpu_per_wall"] = own / max(wall, 1e-9)
        # CPU seconds the rest of the machine (other processes) used per wall second meanwhile
        if busy0 is not None and busy1 is not None:
            out["others_per_wall"] = max(0.0, (busy1 - busy0) - own) / max(wall, 1e-9)
        # memory touched for the first time per step (minor page faults x page size): fresh pages
        # from the kernel, each zeroed on first touch, a large cost on CPU next to the arithmetic
        out["faulted_bytes_per_step"] = ((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0)
                                         * resource.getpagesize() / max(repeats, 1))
    except Exception as err:  # noqa: BLE001 - e.g. a torch.compile failure shows up at the first call
        out.update(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
        return out
    out["loss_value"] = float(loss.detach())
    out["grad_abs_sum"] = float(logits.grad.abs().sum())
    out["times_ms"] = [1000 * t for t in times]
    out["median_ms"] = statistics.median(out["times_ms"])

    if can_reset:
        loss = None
        logits.grad = None
        # shared with `lossc bench`: malloc pinned to mmap, then VmHWM - VmRSS around one step
        out["peak_extra_bytes"], out["memory_method"] = rss_peak_extra_bytes(step)
    out["status"] = "ok"
    return out


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------

def _generated_hashes(losses):
    # in a subprocess: the driver's own lossc import would not see later edits of the sources
    code = ("import json, sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[1]); import cpu_bench; "
            "print(json.dumps({n: cpu_bench.generated_hash(n) for n in sys.argv[2:]}))")
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent), *losses],
                          capture_output=True, text=True, cwd=ROOT)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {}


def multiclass_losses():
    import lossc
    return [e.name for e in lossc.catalog() if e.kind == "multiclass"]


def _cpu_busy(seconds=1.0):
    """Fraction of all cores busy (anyone's) over the next `seconds`, from /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
        return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)
    except OSError:
        return None


def wait_quiet(max_wait, threshold=0.15):
    """Wait (at most max_wait s) until the cores are idle; returns the last busy fraction seen."""
    deadline = time.monotonic() + max_wait
    busy = _cpu_busy()
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        busy = _cpu_busy(2.0)
    return busy


def run_one(name, variant, args):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, variant,
           "--shape", f"{args.N},{args.C}", "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--seed", str(args.seed)]
    busy = wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else _cpu_busy(0.5)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"loss": name, "variant": variant, "status": "failed", "error": f"timeout after {args.timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
            result["cpu_busy_before"] = busy
            return result
    tail = (proc.stderr or proc.stdout)[-2000:]
    return {"loss": name, "variant": variant, "status": "failed",
            "error": f"worker exited with {proc.returncode}: {tail}"}


def _contended(r):
    """True when other processes used the cores during the timed steps (see others_per_wall)."""
    if r.get("status") != "ok":
        return False
    if "others_per_wall" in r:
        return r["others_per_wall"] > CONTENDED
    return r.get("cpu_per_wall", 0) < 0.8 * r.get("threads", 1)  # no /proc/stat: a rougher sign


def _disturbance(r):
    return r["others_per_wall"] if "others_per_wall" in r else -r.get("cpu_per_wall", 0)


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt_ms(r):
    if r is None:
        return "-"
    return f"{r['median_ms']:,.0f}" if r and r.get("status") == "ok" else "failed"


def _fmt_mem(r, input_bytes):
    if r is None:
        return "-"
    if r.get("status") != "ok" or r.get("peak_extra_bytes") is None:
        return "failed"
    b = r["peak_extra_bytes"]
    return f"{b / MB:,.0f} ({b / input_bytes:.1f}x)"


def _generated_moved(name, results, meta):
    seen = {meta.get("generated", {}).get(name), meta.get("generated_after", {}).get(name),
            (results[name].get("fused") or {}).get("generated")}
    return len(seen - {None}) > 1


def _fmt_faults(r):
    if not r or r.get("status") != "ok" or "faulted_bytes_per_step" not in r:
        return "-"
    return f"{r['faulted_bytes_per_step'] / MB:,.0f}"


def _ratio(a, b, key):
    if not a or not b or a.get("status") != "ok" or b.get("status") != "ok" or key not in a or key not in b:
        return None
    return a[key] / b[key] if b[key] else None


def print_table(results, losses, meta):
    from rich.console import Console
    from rich.table import Table

    input_bytes = meta["logits_bytes"]
    table = Table(title=f"forward+backward, mean loss, logits {meta['N']}x{meta['C']} float32 "
                        f"({input_bytes / MB:,.0f} MB); median of {meta['repeats']}; "
                        f"memory = peak extra MB (x logits size)")
    for col, just in [("loss", "left"), ("fused ms", "right"), ("eager ms", "right"),
                      ("compile ms", "right"), ("fused/eager time", "right"), ("fused mem", "right"),
                      ("eager mem", "right"), ("compile mem", "right"), ("fused/eager mem", "right"),
                      ("faulted MB/step f/e/c", "right"), ("goal", "center")]:
        table.add_column(col, justify=just)
    inplace = any("fused_inplace" in results[name] for name in losses)
    if inplace:
        table.add_column("in-place ms", justify="right")
        table.add_column("in-place mem", justify="right")
    for name in losses:
        r = results[name]
        f, e, c = r.get("fused"), r.get("eager"), r.get("compile")
        rt, rm = _ratio(f, e, "median_ms"), _ratio(f, e, "peak_extra_bytes")
        goal = "-" if rt is None or rm is None else ("yes" if rt <= 1.0 and rm <= 0.5 else "[red]no[/red]")
        extra = [_fmt_ms(r.get("fused_inplace")), _fmt_mem(r.get("fused_inplace"), input_bytes)] if inplace else []
        table.add_row(name, _fmt_ms(f), _fmt_ms(e), _fmt_ms(c),
                      "-" if rt is None else f"{rt:.2f}", _fmt_mem(f, input_bytes), _fmt_mem(e, input_bytes),
                      _fmt_mem(c, input_bytes), "-" if rm is None else f"{rm:.2f}",
                      " / ".join(_fmt_faults(v) for v in (f, e, c)), goal, *extra)
    console = Console(width=200)
    console.print(table)
    console.print(f"lossc sources {meta['lossc']}" + ("" if meta.get("lossc_after", meta["lossc"]) == meta["lossc"]
                  else f" at the start, {meta['lossc_after']} at the end") + "; generated modules: "
                  + ", ".join(f"{n} {h}" for n, h in meta.get("generated", {}).items()), highlight=False)
    moved = [n for n in losses if _generated_moved(n, results, meta)]
    if moved:
        console.print(f"[red]warning: the code lossc generates for {', '.join(moved)} changed during the run "
                      f"(lossc was edited meanwhile): their fused row may not match the hash above[/red]")
    console.print("goal: fused <= eager time and <= 1/2 eager peak extra memory. faulted MB/step: memory "
                  "touched for the first time per timed step (minor page faults x page size), for fused / "
                  "eager / compile")
    contended = sorted(f"{name}/{variant}" for name, v in results.items() for variant, r in v.items()
                       if _contended(r))
    if contended:
        console.print(f"[yellow]warning: other processes used more than {CONTENDED} cores while these were "
                      f"timed, even after retries: {', '.join(contended)}; their timings are "
                      f"pessimistic[/yellow]")
    for name in losses:
        for variant in VARIANTS:
            r = results[name].get(variant)
            if r and r.get("status") != "ok":
                console.print(f"[red]{name}/{variant} failed:[/red] {r.get('error', '')[:300]}", markup=True,
                              highlight=False)
        f, e = results[name].get("fused"), results[name].get("eager")
        if f and e and f.get("status") == "ok" and e.get("status") == "ok":
            diff = abs(f["loss_value"] - e["loss_value"]) / max(abs(e["loss_value"]), 1e-30)
            if diff > 1e-4:
                console.print(f"[yellow]{name}: fused loss {f['loss_value']!r} differs from eager "
                              f"{e['loss_value']!r} (rel {diff:.1e})[/yellow]")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="4096,32000", help="N,C of the logits (default 4096,32000)")
    parser.add_argument("--losses", default=None, help="comma-separated loss names (default: every multiclass loss)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed fwd+bwd steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument("--quiet-wait", type=float, default=120,
                        help="before each measurement wait up to this many seconds for idle cores (0: don't)")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-measure a contended result up to this many times (keeps the least contended)")
    parser.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="write the results here")
    parser.add_argument("--worker", nargs=2, metavar=("LOSS", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.N, args.C = (int(v) for v in args.shape.split(","))

    if args.worker:
        name, variant = args.worker
        result = worker(name, variant, args.N, args.C, args.repeats, args.warmup, args.seed)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0

    available = multiclass_losses()
    losses = available if args.losses is None else [s.strip() for s in args.losses.split(",") if s.strip()]
    unknown = [n for n in losses if n not in available]
    if unknown:
        parser.error(f"not multiclass catalog losses: {', '.join(unknown)} (available: {', '.join(available)})")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in VARIANTS for v in variants):
        parser.error(f"--variants must be a subset of {','.join(VARIANTS)}")

    import torch
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "N": args.N, "C": args.C, "dtype": "float32",
        "logits_bytes": args.N * args.C * 4, "repeats": args.repeats, "warmup": args.warmup,
        "lossc": lossc_fingerprint(), "generated": _generated_hashes(losses),
    }
    results = {name: {} for name in losses}
    for name in losses:
        for variant in variants:
            t0 = time.perf_counter()
            r = run_one(name, variant, args)
            attempts = 1
            while attempts <= args.retries and _contended(r):
                # someone else used the cores meanwhile: measure again, keep the least disturbed run
                print(f"[{name:>16} {variant:>7}] contended (other processes used "
                      f"{r.get('others_per_wall', float('nan')):.2f} cores), retrying", file=sys.stderr, flush=True)
                again = run_one(name, variant, args)
                attempts += 1
                if again.get("status") == "ok" and _disturbance(again) < _disturbance(r):
                    r = again
            r["attempts"] = attempts
            results[name][variant] = r
            state = (f"{r['median_ms']:.0f} ms, {(r.get('peak_extra_bytes') or 0) / MB:.0f} MB"
                     if r.get("status") == "ok" else "failed")
            print(f"[{name:>16} {variant:>7}] {state}  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
    meta["lossc_after"] = lossc_fingerprint()
    meta["generated_after"] = _generated_hashes(losses)
    print_table(results, losses, meta)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
