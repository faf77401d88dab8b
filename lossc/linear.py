"""A row loss on the logits of a linear layer, without holding them: ``lossc.linear_loss``, ``lossc.LinearLoss``.

The logits ``z = scale * (hidden @ weight.T + bias)`` are made a chunk of rows at a time into one buffer; the
loss's fused row program (the same ``loss_and_grad`` the torch engine runs) writes their gradient into a
second one, which goes at once into ``d hidden = dz @ weight``, ``d weight += dz.T @ hidden`` and
``d bias += dz.sum(0)``. Peak extra memory: those two chunk buffers, never ``N x V``. With reduction
``mean`` or ``sum`` the gradients are computed in the forward (as Liger-Kernel's fused linear cross-entropy
does) and scaled by ``grad_output`` in the backward; with ``none`` each row's ``grad_output`` is only known
in the backward, which then makes the logits a second time. The triton engine (``_triton_sweep``) runs the
same passes in one kernel whose tiles of logits never leave registers. See docs/linear.md.
"""

from __future__ import annotations

import math
import sys

import torch

from . import runtime as R
from .errors import LossInputError, LossKindError, LossParamError

#: bytes a chunk's logits and their gradient may take together (the chunk's rows follow from V)
MEMORY_TARGET = 256 << 20


def chunk_rows(classes: int, features: int, dtype: torch.dtype, memory: int = MEMORY_TARGET) -> int:
    """Rows per chunk: the logits and their gradient in the compute dtype ([m, V] each), the half-precision
    logits the matmul returns ([m, V] in the input's dtype) and the chunk's d hidden ([m, d]), in ``memory``
    bytes; a multiple of 8 rows (whole SIMD tiles of the matmul) where more than 8 fit."""
    compute = R._compute_dtype(dtype)
    low = torch.finfo(dtype).bits // 8 if compute != dtype else 0
    per_row = classes * (2 * torch.finfo(compute).bits // 8 + low) + features * torch.finfo(dtype).bits // 8
    rows = max(1, memory // max(per_row, 1))
    return rows - rows % 8 if rows >= 16 else rows


class _Call:
    """What one call holds besides the tensors autograd sees: the loss's kernel and parameters, the checked
    targets, each row's factor, the options."""

    def __init__(self, kernel, values, t, valid, scale, reduction, logit_scale, chunk, shard):
        self.kernel, self.values, self.t, self.valid, self.scale = kernel, values, t, valid, scale
        self.reduction, self.logit_scale, self.chunk, self.shard = reduction, logit_scale, chunk, shard
        self.linear_module = self.triton_values = None  # (the triton engine: its kernel's module and parameters)
        self.backward_done = False


def _triton_sweep(call: _Call, h, W, b, need: tuple, rows_factor=None):
    """_sweep on the triton engine: one launch of the loss's linear kernel (codegen.triton_linear_module), BLOCK_R
    rows per program, the logits made tile by tile from hidden and weight in registers and never stored; d hidden,
    d weight and d bias accumulated in float32 buffers."""
    from .triton_runtime import _loss_buffer, _next_power_of_2, launch, triton
    module, values = call.linear_module, call.triton_values
    N, D = h.shape
    V = W.shape[0]
    want = any(need)
    scale = call.scale
    if rows_factor is not None:
        factor = rows_factor.to(torch.float32)
        scale = factor if scale is None else factor * scale
    w = None if scale is None else torch.broadcast_to(torch.as_tensor(scale, device=h.device), (N,)).to(
        torch.float32).contiguous()  # (each row's factor: the kernel reads one per row)
    block_r, block_c, block_d = 16, max(16, min(128, _next_power_of_2(V))), max(16, min(64, _next_power_of_2(D)))
    programs = triton.cdiv(N, block_r) if N else 0
    reduce = call.reduction != "none" and rows_factor is None
    out = _loss_buffer(h, programs, N, reduce)
    f32 = dict(dtype=torch.float32, device=h.device)
    dh = torch.zeros((N, D), **f32) if want else h
    dw = torch.zeros((V, D), **f32) if want else h
    db = torch.zeros((V,), **f32) if want and b is not None else h
    t = call.t
    soft = t.dim() == 2
    if programs:
        valid = h if call.valid is None else call.valid.view(torch.uint8)
        args = (h, t, valid, h if w is None else w, h, out, h, N, V, 1, D, 1, 1) \
            + ((t.stride(0), t.stride(1), 0) if soft else ()) + (0, 0, 0) \
            + tuple(getattr(values, name) for name in module.VECTORS) + (1.0,) \
            + tuple(module._triton_constants(values, V))
        meta = dict(h_ptr=h, wt_ptr=W, b_ptr=h if b is None else b, dh_ptr=dh, dw_ptr=dw, db_ptr=db, D=D,
                    shn=h.stride(0), swv=W.stride(0), logit_scale=call.logit_scale, HAS_VALID=call.valid is not None,
                    HAS_W=w is not None, HAS_DEN=False, REDUCE=reduce, NEED_GRAD=want, BLOCK_R=block_r, BLOCK_C=block_c, S_GT_1=False, IMAGE_BLOCKS=False, ALIGN=1,
                    WIDE=False, SERPENTINE=True, HAS_BIAS=b is not None,
                    HALF=h.dtype in (torch.float16, torch.bfloat16), BLOCK_D=block_d)
        # (exact ties: each sweep makes its tiles of logits again, and a max reduction finds its argmax by ==)
        launch(module.KERNEL, (programs,), args, meta, 4, exact_ties=True)
    loss = out.sum().to(h.dtype) if reduce else out
    if not want:
        return loss, None, None, None
    return (loss, dh.to(h.dtype) if need[0] else None, dw.to(W.dtype) if need[1] else None,
            db.to(b.dtype) if need[2] else None)


def _linear_module(spec, params: dict):
    """The loaded module of a row loss's triton linear kernel (compiled once per loss text)."""
    from . import api, codegen
    parsed = api.parse(spec, **params)
    return api._load(codegen.triton_linear_module(parsed), parsed.name + "_linear")


def _sharded(call: _Call, h, W, b, need: tuple, rows_factor=None):
    """_sweep with the call's class group (if any) in place: the row reductions all-reduced over it, and
    d hidden (each rank's part from its own rows of weight) summed over it."""
    if call.linear_module is not None:
        return _triton_sweep(call, h, W, b, need, rows_factor)
    if call.shard is None:
        return _sweep(call, h, W, b, need, rows_factor)
    import torch.distributed as dist
    previous, R._SHARD = R._SHARD, call.shard
    try:
        out = _sweep(call, h, W, b, need, rows_factor)
    finally:
        R._SHARD = previous
    if out[1] is not None:
        dist.all_reduce(out[1], op=dist.ReduceOp.SUM, group=call.shard.group)
    return out


def _sweep(call: _Call, h, W, b, need: tuple, rows_factor=None):
    """One pass over the rows: the loss (per row for reduction none, else the sum) and, for the inputs
    ``need`` marks (hidden, weight, bias), the gradients of sum_i c_i L_i, c_i the row's factor (times
    ``rows_factor``, the backward's grad_output of reduction none)."""
    N, d = h.shape
    V = W.shape[0]
    dtype = R._compute_dtype(h.dtype)
    loss_fn, loss_and_grad = call.kernel.functions(call.values)
    scale, valid, t = call.scale, call.valid, call.t
    per_row = isinstance(scale, torch.Tensor) and scale.dim() == 1
    want = any(need)
    step = call.chunk or chunk_rows(V if call.shard is None else call.shard.classes, d, h.dtype)  # (the same
    # chunks on every rank of a class group)
    z = torch.empty((min(step, N), V), dtype=dtype, device=h.device)
    dz = torch.empty_like(z) if want else None
    dh = torch.empty_like(h) if need[0] else None
    dW = torch.zeros_like(W) if need[1] else None
    db = torch.zeros(V, dtype=dtype, device=h.device) if need[2] else None
    losses = torch.empty(N, dtype=dtype, device=h.device) if call.reduction == "none" and rows_factor is None \
        else None
    total = torch.zeros((), dtype=dtype, device=h.device)
    pool = R._Pool()
    bias = None if b is None else b.to(dtype)
    for start in range(0, N, step):
        end = min(start + step, N)
        hc, zc = h[start:end], z[:end - start]
        if h.dtype == dtype:
            torch.mm(hc, W.t(), out=zc)
        else:  # (half precision: the matmul accumulates in float32 and rounds its result to the input's dtype)
            zc.copy_(torch.mm(hc, W.t()))
        if bias is not None:
            zc += bias
        if call.logit_scale != 1.0:
            zc *= call.logit_scale
        tc = t[start:end]
        kept = None if valid is None else valid[start:end]
        sc = scale[start:end] if per_row else scale
        if rows_factor is not None:
            factor = rows_factor[start:end].to(dtype)
            sc = factor if sc is None else factor * sc
        if want:
            dzc = dz[:end - start]
            loss = R._fused_chunk(loss_and_grad, zc, tc, call.values, dzc, sc, kept, pool)
            if call.logit_scale != 1.0:
                dzc *= call.logit_scale
            low = dzc if dzc.dtype == h.dtype else dzc.to(h.dtype)
            if dh is not None:
                torch.mm(low, W, out=dh[start:end])
            if dW is not None:
                dW.addmm_(low.t(), hc)
            if db is not None:
                db += dzc.sum(0)
        elif rows_factor is None:
            loss = loss_fn(zc, tc, call.values)
        else:
            continue
        if rows_factor is not None:
            continue  # (the backward of reduction none: only the gradients)
        loss = R._as_rows(loss, end - start, zc)
        if kept is not None:
            loss = torch.where(kept, loss, 0.0)
        if sc is not None:
            loss = loss * sc
        if losses is not None:
            losses[start:end] = loss
        else:
            total += loss.sum()
    out = losses if losses is not None else total
    return out.to(h.dtype), dh, dW, None if db is None else db.to(b.dtype)


class _LinearLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, b, call, need):
        ctx.call, ctx.need = call, need
        if call.reduction == "none":  # the rows' grad_output comes in the backward: the gradients are made there
            loss, *_ = _sharded(call, h, W, b, (False, False, False))
            ctx.save_for_backward(h, W, b)
            return loss
        loss, dh, dW, db = _sharded(call, h, W, b, need)
        ctx.save_for_backward(dh, dW, db)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        call = ctx.call
        if call.reduction == "none":
            h, W, b = ctx.saved_tensors
            _, dh, dW, db = _sharded(call, h, W, b, ctx.need, rows_factor=grad_output.reshape(-1))
            return dh, dW, db, None, None
        if call.backward_done:
            raise RuntimeError("lossc.linear_loss: its backward runs once (the gradients were computed in the "
                               "forward and are scaled in place); call the loss again, or use reduction='none'")
        call.backward_done = True
        grads = ctx.saved_tensors
        if not (isinstance(grad_output, torch.Tensor) and grad_output.numel() == 1 and float(grad_output) == 1.0):
            for g in grads:
                if g is not None:
                    g.mul_(grad_output.to(g.dtype))
        return (*grads, None, None)


def _kernel_of(module: torch.nn.Module):
    """The kernel (generated functions) of a module built by lossc.loss."""
    return sys.modules[type(module).__module__].KERNEL


class LinearLoss(torch.nn.Module):
    """A row loss on ``hidden @ weight.T + bias`` without holding the logits:
    ``LinearLoss("ce_zloss")(h, model.lm_head.weight, labels)`` replaces
    ``F.cross_entropy(model.lm_head(h), labels)`` (plus its z-loss). ``spec`` is what ``lossc.loss`` takes (a
    catalog name, ``.loss`` text or a path) and must be a row loss (multiclass or distribution); its parameters
    are keywords. ``weight_per_class``: class weights [V] (as ``weight`` of nn.CrossEntropyLoss);
    ``ignore_index``: targets equal to it are dropped (None: none); ``scale``: the logits are multiplied by it
    (1 / temperature: contrastive similarities ``q @ k.T / tau``); ``chunk``: rows per chunk (default: from V,
    d and ``lossc.linear.MEMORY_TARGET``); ``class_group``: a torch.distributed process group over which the
    vocabulary is split (vocabulary parallelism): each rank passes its contiguous block of rows of ``weight``
    (and of ``bias``), ranks in group order holding consecutive blocks, the same ``hidden`` and the global
    targets; every rank gets the whole loss, the whole gradient of ``hidden`` and the gradient of its own
    block of ``weight`` and ``bias`` (each pass all-reduces its row reductions, see docs/distributed.md);
    ``backend``: "torch" (chunked matmuls), "triton" (one kernel: logits tile by tile in registers, never
    stored) or "auto" (triton on CUDA tensors when it is installed, else torch)."""

    def __init__(self, spec, *, reduction: str = "mean", weight_per_class=None, ignore_index: int | None = None,
                 scale: float = 1.0, chunk: int | None = None, validate: bool = True, class_group=None,
                 backend: str = "auto", **params):
        super().__init__()
        if backend not in ("auto", "torch", "triton"):
            raise LossParamError(f"linear_loss: backend must be 'auto', 'torch' or 'triton', got {backend!r}")
        self.backend, self._spec = backend, (spec, dict(params))
        from .api import loss
        self.loss = loss(spec, weight=weight_per_class, ignore_index=ignore_index, reduction=reduction,
                         backend="torch", validate=validate, **params)
        kernel = _kernel_of(self.loss)
        if not kernel.rows:
            raise LossKindError(f"{kernel.name}: linear_loss takes a row loss (multiclass or distribution: a "
                                f"loss of a row of logits), not a {kernel.target} loss")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale != 0):
            raise LossParamError(f"{kernel.name}: scale must be a finite nonzero number, got {scale!r}")
        if chunk is not None and not (isinstance(chunk, int) and chunk >= 1):
            raise LossParamError(f"{kernel.name}: chunk must be a positive number of rows, got {chunk!r}")
        self.scale, self.chunk, self.class_group = float(scale), chunk, class_group

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_group is None:
            return self._forward(hidden, weight, target, bias, None)
        inner = self.loss
        kernel = _kernel_of(inner)
        like = weight.new_empty(1, dtype=R._compute_dtype(weight.dtype)).as_strided((hidden.numel() // max(
            hidden.shape[-1], 1), weight.shape[0]), (0, 0)) if isinstance(weight, torch.Tensor) and \
            weight.dim() == 2 and isinstance(hidden, torch.Tensor) and hidden.dim() >= 2 else weight
        call = (inner.params, inner.weight is not None, inner.reduction, inner.ignore_index, bool(inner.validate),
                False)
        shard = R._class_shard(kernel, self.class_group, like, "torch", call)
        previous, R._SHARD = R._SHARD, shard
        try:
            return R._agreed(shard.agreement, self._forward, hidden, weight, target, bias, shard)
        finally:
            R._SHARD = previous

    def _forward(self, hidden, weight, target, bias, shard):
        inner = self.loss
        kernel = _kernel_of(inner)
        h, W, b = _checked(kernel.name, hidden, weight, bias)
        N, V = h.shape[0], W.shape[0]
        distribution = kernel.target == "distribution"
        if distribution:
            target = target.reshape(N, V) if target.dim() == hidden.dim() and target.shape[-1] == V else target
        else:
            target = target.reshape(-1) if target.dim() == hidden.dim() - 1 else target
        dtype = R._compute_dtype(h.dtype)
        logits = h.new_empty(1, dtype=dtype).as_strided((N, V), (0, 0))  # (shape, dtype, device: no memory)
        t, valid, shape = R._targets(kernel, logits, target, inner.ignore_index, inner.validate and
                                     not R._compiling())
        weights = inner.weight
        classes = V if shard is None else shard.classes
        if isinstance(weights, torch.Tensor) and tuple(weights.shape) != (classes,):
            raise LossInputError(f"{kernel.name}: weight_per_class has {weights.numel()} values, but there are "
                                 f"V = {classes} classes" + ("" if shard is None else " (all ranks' rows of weight)"))
        if valid is not None and h.device.type == "cpu" and bool(valid.all()):
            valid = None
        w, den, mul = R._scaling(kernel, t, valid, weights, None, shape, inner.reduction, dtype)
        values = R._Values(kernel.layout, R._flat(kernel, inner.params),
                           R._class_tensors(kernel, inner.params, weights, logits))
        call = _Call(kernel, values, t, valid, R._scale_of(w, den, mul, dtype), inner.reduction, self.scale,
                     self.chunk, shard)
        if self._engine(h) == "triton":
            if shard is not None:
                raise LossParamError(f"{kernel.name}: the triton engine of linear_loss does not take a class_group; "
                                     "use backend='torch'")
            call.linear_module = _linear_module(*self._spec)
            call.triton_values = R._Values(kernel.layout, R._flat(kernel, inner.params),
                                           R._class_tensors(kernel, inner.params, weights, logits, "triton"))
        grad = torch.is_grad_enabled()
        need = (grad and h.requires_grad, grad and W.requires_grad, grad and b is not None and b.requires_grad)
        out = _LinearLoss.apply(h, W, b, call, need)
        if inner.reduction == "mean":
            out = R._mean_of_nothing(out, shape)
        return out.reshape(hidden.shape[:-1]) if inner.reduction == "none" else out

    def _engine(self, h: torch.Tensor) -> str:
        """triton where asked for, or (auto) on a CUDA tensor with triton installed; else torch."""
        if self.backend == "auto":
            from .api import _triton_installed
            return "triton" if h.is_cuda and _triton_installed() else "torch"
        return self.backend

    def extra_repr(self) -> str:
        return f"{self.loss.extra_repr()}, scale={self.scale}"


def _checked(name: str, hidden, weight, bias):
    """hidden as [N, d], weight [V, d], bias [V] or None, checked against each other."""
    for what, x in (("hidden", hidden), ("weight", weight)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise LossInputError(f"{name}: {what} must be a floating-point tensor")
    if hidden.dim() < 2 or weight.dim() != 2:
        raise LossInputError(f"{name}: hidden must be [N, d] or [B, T, d] and weight [V, d], got "
                             f"{list(hidden.shape)} and {list(weight.shape)}")
    if hidden.shape[-1] != weight.shape[1]:
        raise LossInputError(f"{name}: hidden has d = {hidden.shape[-1]} features but weight is "
                             f"{list(weight.shape)} ([V, d])")
    if hidden.dtype != weight.dtype or hidden.device != weight.device:
        raise LossInputError(f"{name}: hidden and weight must have one dtype and device, got {hidden.dtype} on "
                             f"{hidden.device} and {weight.dtype} on {weight.device}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],)):
        raise LossInputError(f"{name}: bias must be a tensor [V] = [{weight.shape[0]}], got "
                             f"{list(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__}")
    h = hidden.reshape(-1, hidden.shape[-1])
    return h.contiguous(), weight.contiguous(), bias


def linear_loss(spec, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                bias: torch.Tensor | None = None, *, reduction: str = "mean", weight_per_class=None,
                ignore_index: int | None = None, scale: float = 1.0, chunk: int | None = None, class_group=None,
                backend: str = "auto", **params) -> torch.Tensor:
    """The loss ``spec`` (a row loss: catalog name, ``.loss`` text or path) of the logits
    ``scale * (hidden @ weight.T + bias)`` without holding them; gradients flow to hidden, weight and bias.
    ``hidden`` [N, d] or [B, T, d], ``weight`` [V, d], ``target`` [N] / [B, T] class indices (or [N, V]
    probabilities for a distribution loss). See LinearLoss for the options."""
    module = LinearLoss(spec, reduction=reduction, weight_per_class=weight_per_class, ignore_index=ignore_index,
                        scale=scale, chunk=chunk, class_group=class_group, backend=backend, **params)
    return module(hidden, weight, target, bias)
