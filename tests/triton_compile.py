"""Compile generated triton kernels for a GPU (sm_90) without one: triton's front end, its passes and
ptxas (shipped with triton) all run on the CPU. Catches what the interpreter lets through (types,
scoping, constexpr use) in the code path the GPU runs.

    python tests/triton_compile.py NAME...      # prints "ok NAME KERNEL CONFIG" per kernel, exit 1 on failure

Run it without TRITON_INTERPRET (tests/test_triton.py does, in a subprocess).
"""

from __future__ import annotations

import os
import re
import sys
import traceback

os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import lossc  # noqa: E402

FLAGS = dict(HAS_VALID=True, HAS_W=True, HAS_DEN=True)
# (kernel suffix, dtype of the logits, constexprs, num_warps)
ROW = [("_row_tile", "bf16", dict(FLAGS, REDUCE=False, NEED_GRAD=True, BLOCK_R=2, BLOCK_C=1024, S_GT_1=False, IMAGE_BLOCKS=False, ALIGN=8, WIDE=False), 4),
       ("_row_tile", "fp32", dict(FLAGS, REDUCE=True, NEED_GRAD=False, BLOCK_R=64, BLOCK_C=32, S_GT_1=True, IMAGE_BLOCKS=True, ALIGN=1, WIDE=True), 16),
       ("_row_tile", "fp16", dict(FLAGS, REDUCE=False, NEED_GRAD=True, BLOCK_R=16, BLOCK_C=128, S_GT_1=True, IMAGE_BLOCKS=False, ALIGN=1, WIDE=False), 8),
       ("_row_chunked", "bf16", dict(FLAGS, REDUCE=True, NEED_GRAD=True, BLOCK_R=1, BLOCK_C=4096, S_GT_1=False, IMAGE_BLOCKS=False, ALIGN=16, WIDE=False, SERPENTINE=True), 8),
       ("_row_chunked", "fp16", dict(FLAGS, REDUCE=False, NEED_GRAD=False, BLOCK_R=1, BLOCK_C=4096, S_GT_1=True, IMAGE_BLOCKS=False, ALIGN=2, WIDE=True, SERPENTINE=False), 8)]
ELEMENTWISE = [("_elementwise", "fp32", dict(FLAGS, REDUCE=True, NEED_GRAD=True, BLOCK=1024), 8),
               ("_elementwise", "bf16", dict(FLAGS, REDUCE=False, NEED_GRAD=False, BLOCK=1024), 8)]
BATCH = [("_batch_sums", "fp32", dict(HAS_W=True, FROM_LOGITS=False, BLOCK=1024), 8),
         ("_batch_sums", "bf16", dict(HAS_W=False, FROM_LOGITS=True, BLOCK=1024), 8),
         ("_batch_grad", "fp32", dict(HAS_W=True, FROM_LOGITS=True, BLOCK=1024), 8),
         ("_batch_grad", "bf16", dict(HAS_W=False, FROM_LOGITS=False, BLOCK=1024), 8)]


def signature(fn, dtype, constexprs):
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in ("x_ptr", "u_ptr", "grad_ptr", "g_ptr", "q_ptr"):  # (soft targets q: as the logits here)
            sig[name] = f"*{dtype}"
        elif name == "t_ptr":
            sig[name] = "*i64" if "row" in fn.__name__ else f"*{dtype}"
        elif name == "valid_ptr":
            sig[name] = "*u8"
        elif name == "out_ptr":
            sig[name] = "*fp32" if constexprs.get("REDUCE") else f"*{dtype}"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32"
        elif name == "mul" or re.fullmatch(r"k\d+", name):
            sig[name] = "fp32"
        else:
            sig[name] = "i64" if name in ("M", "n") else "i32"
    return sig


def compile_kernel(fn, dtype, constexprs, warps):
    index = {name: i for i, name in enumerate(fn.arg_names)}
    source = ASTSource(fn, signature(fn, dtype, constexprs),
                       constexprs={(index[k],): v for k, v in constexprs.items()})
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))


def main(names):
    failed = 0
    for spec in names:
        module = lossc.module(spec, target="all")
        name = module.NAME
        configs = {"row": ROW, "batch": BATCH}.get(module.KERNEL.form, ELEMENTWISE)
        for suffix, dtype, constexprs, warps in configs:
            fn = getattr(module, f"_{name}{suffix}")
            try:
                compile_kernel(fn, dtype, constexprs, warps)
                print("ok", name, suffix, dtype, constexprs)
            except Exception:  # noqa: BLE001 - report every kernel that fails, then fail
                failed += 1
                print("FAILED", name, suffix, dtype, constexprs)
                traceback.print_exc()
    scale = sys.modules[module.__name__]._tl_scale_kernel
    compile_kernel(scale, "bf16", dict(BLOCK=4096), 8)
    print("ok _tl_scale_kernel")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
