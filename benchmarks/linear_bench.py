"""Fused linear + loss on the CPU: lossc.LinearLoss against the logits-in-memory ways.

For a head ``hidden [N, d] @ weight.T`` with ``V`` classes, one training step (forward and backward to
hidden and weight) of the mean loss, four ways:

``eager``     ``F.linear`` then the loss written in plain torch (tests/test_linear.py's HAND) under autograd
``compile``   ``torch.compile`` (inductor, default mode) of exactly that function
``unfused``   ``F.linear`` then lossc's own fused loss module (``lossc.loss(name, backend="torch")``)
``linear``    ``lossc.LinearLoss(name)(hidden, weight, target)``: the logits never in memory

Each (loss, shape, dtype, way) runs in a fresh subprocess: the median of ``--repeats`` timed steps after one
warm-up step (for ``compile``, the warm-up compiles), then the peak extra memory of one more step with
``lossc.bench.rss_peak_extra_bytes`` (RSS high-water mark above the RSS before the step, glibc pinned to
mmap; see benchmarks/cpu_bench.py), less the gradients of hidden and weight, which every way must hold.

    python benchmarks/linear_bench.py                                   # the issue's CPU rows
    python benchmarks/linear_bench.py --shapes 512,256,8000 --repeats 2 # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MARK = "@@LINEAR_BENCH "
WAYS = ("eager", "compile", "unfused", "linear")
MB = 1 << 20


def _hand(name):
    """The loss written in plain torch, independent of lossc (as in tests/test_linear.py)."""
    import torch
    import torch.nn.functional as F
    if name == "cross_entropy":
        return lambda z, t: F.cross_entropy(z.float(), t)
    if name == "ce_zloss":
        return lambda z, t: F.cross_entropy(z.float(), t) + 1e-4 * (torch.logsumexp(z.float(), -1) ** 2).mean()
    if name == "focal":
        def focal(z, t):
            logp = torch.log_softmax(z.float(), -1).gather(1, t[:, None])[:, 0]
            return (-(1 - logp.exp()) ** 2 * logp).mean()
        return focal
    if name == "label_smoothing":
        return lambda z, t: F.cross_entropy(z.float(), t, label_smoothing=0.1)
    if name == "poly1":
        return lambda z, t: F.cross_entropy(z.float(), t) + (1 - torch.softmax(z.float(), -1).gather(
            1, t[:, None])).mean()
    raise KeyError(name)


def worker(name: str, way: str, N: int, d: int, V: int, dtype_name: str, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F
    import lossc
    from lossc.bench import rss_peak_extra_bytes
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(N, d, generator=g) / d ** 0.5).to(dtype).requires_grad_()
    W = torch.randn(V, d, generator=g).to(dtype).requires_grad_()
    t = torch.randint(0, V, (N,), generator=g)
    if way == "linear":
        head = lossc.LinearLoss(name)
        fn = lambda: head(h, W, t)  # noqa: E731
    elif way == "unfused":
        module = lossc.loss(name, backend="torch")
        fn = lambda: module(F.linear(h, W), t)  # noqa: E731
    else:
        hand = _hand(name)
        step_fn = (lambda hh, ww, tt: hand(F.linear(hh, ww), tt))
        if way == "compile":
            step_fn = torch.compile(step_fn)
        fn = lambda: step_fn(h, W, t)  # noqa: E731

    def step():
        h.grad = W.grad = None
        loss = fn()
        loss.backward()
        return float(loss.detach())

    started = time.perf_counter()
    value = step()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    h.grad = W.grad = None
    peak, method = rss_peak_extra_bytes(step)
    inherent = h.numel() * h.element_size() + W.numel() * W.element_size()
    return dict(loss=name, way=way, N=N, d=d, V=V, dtype=dtype_name, value=value, first_s=first,
                median_s=statistics.median(times), times_s=times,
                peak_extra_bytes=None if peak is None else peak - inherent, memory_method=method,
                logits_bytes=N * V * torch.finfo(dtype).bits // 8, threads=torch.get_num_threads())


def contrastive(N: int, d: int, tau: float = 0.07) -> dict:
    """CLIP's symmetric InfoNCE on N pairs with LinearLoss: time and peak extra memory of one step (an N x N
    similarity matrix in float32 would take 4 N^2 bytes)."""
    import torch
    import torch.nn.functional as F
    import lossc
    from lossc.bench import rss_peak_extra_bytes
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(N, d, generator=g), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(N, d, generator=g), dim=-1).requires_grad_()
    labels = torch.arange(N)
    head = lossc.LinearLoss("cross_entropy", scale=1 / tau)

    def step():
        q.grad = k.grad = None
        loss = (head(q, k, labels) + head(k, q, labels)) / 2
        loss.backward()
        return float(loss.detach())

    started = time.perf_counter()
    value = step()
    seconds = time.perf_counter() - started
    q.grad = k.grad = None
    peak, method = rss_peak_extra_bytes(step)
    return dict(loss="infonce (2 x cross_entropy)", way="linear", N=N, d=d, V=N, dtype="float32", value=value,
                median_s=seconds, peak_extra_bytes=peak - 2 * q.numel() * 4, memory_method=method,
                logits_bytes=4 * N * N)


def _run(args, name, way, N, d, V, dtype) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, way, str(N), str(d), str(V), dtype, str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return dict(loss=name, way=way, N=N, d=d, V=V, dtype=dtype, status="failed",
                error=(done.stderr or done.stdout).strip().splitlines()[-1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    parser.add_argument("--losses", default="cross_entropy,ce_zloss")
    parser.add_argument("--shapes", default="4096,1024,32000;4096,1024,128256", help="N,d,V;N,d,V")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--contrastive", type=str, help="N,d: CLIP's symmetric InfoNCE on N pairs, then stop")
    args = parser.parse_args()
    if args.contrastive:
        N, d = (int(v) for v in args.contrastive.split(","))
        r = contrastive(N, d)
        print(f"{r['loss']} N={N} d={d}: {r['median_s']:.1f} s, extra {r['peak_extra_bytes'] / MB:.0f} MB "
              f"(an N x N float32 matrix: {r['logits_bytes'] / MB:.0f} MB), loss {r['value']:.6f}")
        return
    if args.worker:
        name, way, N, d, V, dtype, repeats = args.worker
        print(MARK + json.dumps(worker(name, way, int(N), int(d), int(V), dtype, int(repeats))), flush=True)
        return
    results = []
    for shape in args.shapes.split(";"):
        N, d, V = (int(v) for v in shape.split(","))
        for dtype in args.dtypes.split(","):
            for name in args.losses.split(","):
                for way in args.ways.split(","):
                    r = _run(args, name, way, N, d, V, dtype)
                    results.append(r)
                    if r.get("status") == "failed":
                        print(f"{name:14} {way:8} {N}x{d}x{V} {dtype:9} failed: {r['error']}", flush=True)
                        continue
                    peak = r["peak_extra_bytes"]
                    print(f"{name:14} {way:8} {N}x{d}x{V} {dtype:9} {r['median_s'] * 1e3:9.0f} ms  "
                          f"extra {peak / MB:8.0f} MB ({peak / r['logits_bytes']:.2f}x logits)  "
                          f"loss {r['value']:.6f}", flush=True)
    if args.json:
        meta = dict(date=datetime.date.today().isoformat(), machine=platform.processor() or platform.machine(),
                    python=platform.python_version())
        args.json.write_text(json.dumps(dict(meta=meta, results=results), indent=1))


if __name__ == "__main__":
    main()
