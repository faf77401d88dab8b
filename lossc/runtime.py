# lossc runtime: the skeleton every generated module shares. It is copied verbatim into
# compiled modules (so they are self-contained) and imported by lossc itself.
# It holds no math of any loss: the generated functions `loss` / `loss_and_grad` do.
import math

import torch

try:
    from lossc.errors import LossInputError, LossParamError
except ImportError:  # a compiled module used without lossc installed
    class LossInputError(ValueError):
        """Tensors given to a loss have the wrong shape, dtype or values."""

    class LossParamError(ValueError):
        """A parameter value is missing, of the wrong type or violates a constraint."""

REDUCTIONS = ("none", "mean", "sum")
BACKENDS = ("auto", "torch", "reference", "triton")
CHUNK_ELEMENTS = 1 << 21  # rows are processed in chunks of about this many logits


def _softplus(x):
    return torch.relu(x) + torch.log1p(torch.exp(-torch.abs(x)))


def _step(x):
    return (x > 0).to(x.dtype)


def _heaviside(x):
    return torch.where(x > 0, 1.0, torch.where(x < 0, 0.0, 0.5)).to(x.dtype)


def _logratio(d):
    # d / (1 - exp(d)) for d <= 0, with its limit -1 at d = 0 (no 0/0, also under autograd)
    den = -torch.expm1(d)
    zero = den == 0
    return torch.where(zero, -1.0, d / torch.where(zero, 1.0, den))


def _detach(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def _scalar(fn, x):
    return float(fn(torch.tensor(float(x), dtype=torch.float64)))


def _as_grad(x, like):
    """x as a fresh tensor of like's shape and dtype, safe to write into."""
    if not isinstance(x, torch.Tensor) or x.shape != like.shape or x.dtype != like.dtype \
            or x.data_ptr() == like.data_ptr() or not x.is_contiguous():
        out = torch.empty_like(like)
        out.copy_(torch.as_tensor(x, dtype=like.dtype, device=like.device).expand_as(like))
        return out
    return x


def _as_column(x, like):
    return torch.as_tensor(x, dtype=like.dtype, device=like.device).expand_as(like)


def _as_rows(x, count, like):
    """A per-row (or per-element) result, whatever broadcast shape the expression had, as [count]."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return x.reshape(-1).expand(count) if x.numel() == 1 else x.reshape(count)


class Kernel:
    """The generated functions of one loss: ``loss(z, t, P)`` (differentiable torch ops: the
    ``reference`` backend runs it under autograd) and ``loss_and_grad(z, t, P)``."""

    def __init__(self, name, form, target, loss, loss_and_grad):
        self.name, self.form, self.target = name, form, target
        self.loss, self.loss_and_grad = loss, loss_and_grad


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _flatten(kernel, input, target, ignore_index, validate):
    """(x [M, C] or [M], t [M], valid [M] or None, shape of the unreduced loss).
    x is a view of the input (or a moved copy), so autograd carries the gradient back."""
    if not isinstance(input, torch.Tensor) or not input.is_floating_point():
        raise LossInputError(f"{kernel.name}: input must be a floating-point tensor")
    if not isinstance(target, torch.Tensor):
        raise LossInputError(f"{kernel.name}: target must be a tensor")
    if kernel.form == "row":
        if input.dim() < 2:
            raise LossInputError(f"{kernel.name}: input must be [N, C] or [N, C, d1, ...], got {list(input.shape)}")
        expected = (input.shape[0],) + tuple(input.shape[2:])
        if tuple(target.shape) != expected:
            raise LossInputError(f"{kernel.name}: target must have shape {list(expected)} for input "
                                 f"{list(input.shape)}, got {list(target.shape)}")
        if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise LossInputError(f"{kernel.name}: target must hold class indices (an integer tensor), "
                                 f"got {target.dtype}")
        C = input.shape[1]
        x = input.movedim(1, -1).reshape(-1, C)
        t = target.reshape(-1).long()
        valid = t != ignore_index
        if validate and t.numel():
            bad = valid & ((t < 0) | (t >= C))
            if bool(bad.any()):
                value = int(t[bad][0])
                raise LossInputError(f"{kernel.name}: target holds class index {value}, outside [0, {C}) "
                                     f"(ignore_index is {ignore_index})")
        t = torch.where(valid, t, 0)
        return x, t, valid, tuple(target.shape)
    if tuple(target.shape) != tuple(input.shape):
        raise LossInputError(f"{kernel.name}: target must have the input's shape {list(input.shape)}, "
                             f"got {list(target.shape)}")
    x = input.reshape(-1)
    t = target.reshape(-1).to(_compute_dtype(input.dtype))
    valid = None
    if ignore_index is not None:
        valid = t != ignore_index
        t = torch.where(valid, t, 0.0)
    if validate and t.numel():
        if bool(torch.isnan(t).any()):
            raise LossInputError(f"{kernel.name}: target holds NaN")
        allowed = {"binary": (0.0, 1.0), "sign": (-1.0, 1.0)}.get(kernel.target)
        if allowed is not None:
            keep = valid if valid is not None else torch.ones_like(t, dtype=torch.bool)
            bad = keep & (t != allowed[0]) & (t != allowed[1])
            if kernel.target == "binary":
                bad = keep & ((t < 0) | (t > 1))  # soft targets in [0, 1] are allowed
            if bool(bad.any()):
                raise LossInputError(f"{kernel.name}: target holds {float(t[bad][0])}, expected values in "
                                     f"{list(allowed)}" + (" or between" if kernel.target == "binary" else ""))
    return x, t, valid, tuple(input.shape)


def _row_weights(kernel, t, valid, weight, sample_weight, shape, reduction, dtype):
    """Per-row factor of the loss and the divisor of the mean (nn.CrossEntropyLoss semantics)."""
    w = None
    if weight is not None:
        if kernel.form == "row":
            w = weight.to(dtype)[t]
        else:
            w = torch.broadcast_to(weight.to(dtype), shape).reshape(-1)
    if valid is not None:
        w = valid.to(dtype) if w is None else w * valid
    # The mean's divisor: the kept rows' class weights (nn.CrossEntropyLoss); for elementwise
    # kinds the number of kept elements (nn.BCELoss: weight rescales, the mean stays a mean).
    if kernel.form == "row" and w is not None:
        denominator = w.sum()
    elif valid is not None:
        denominator = valid.sum().to(dtype)
    else:
        denominator = torch.tensor(float(t.numel()), dtype=dtype, device=t.device)
    if sample_weight is not None:
        sw = sample_weight.detach().to(dtype)
        if tuple(sw.shape) != tuple(shape):
            try:
                sw = torch.broadcast_to(sw, shape)
            except RuntimeError:
                raise LossInputError(f"{kernel.name}: sample_weight must have the shape of the unreduced "
                                     f"loss {list(shape)}, got {list(sample_weight.shape)}") from None
        sw = sw.reshape(-1)
        w = sw if w is None else w * sw
    if reduction == "mean":
        scale = (w if w is not None else torch.ones_like(t, dtype=dtype)) / denominator
    else:
        scale = w
    return w, scale


class _Fused(torch.autograd.Function):
    """Forward computes loss and gradient together, chunk by chunk; backward only scales."""

    @staticmethod
    def forward(ctx, x, kernel, t, valid, scale, params, reduction, need_grad):
        dtype = _compute_dtype(x.dtype)
        rows = x.shape[0]
        width = x.shape[1] if x.dim() == 2 else 1
        step = max(1, CHUNK_ELEMENTS // max(width, 1))
        losses = torch.empty(rows, dtype=dtype, device=x.device)
        grad = torch.empty_like(x) if need_grad else None
        for start in range(0, rows, step):
            end = min(start + step, rows)
            xc, tc = x[start:end].to(dtype), t[start:end]
            if need_grad:
                loss, g = kernel.loss_and_grad(xc, tc, params)
                if scale is not None:
                    sc = scale[start:end]
                    g = g * (sc[:, None] if g.dim() == 2 else sc)
                if valid is not None:
                    vc = valid[start:end]
                    g = torch.where(vc[:, None] if g.dim() == 2 else vc, g, 0.0)
                grad[start:end] = g
            else:
                loss = kernel.loss(xc, tc, params)
            losses[start:end] = _as_rows(loss, end - start, xc)
        if valid is not None:
            losses = torch.where(valid, losses, 0.0)
        weighted = losses if scale is None else losses * scale
        out = weighted if reduction == "none" else weighted.sum()
        ctx.reduction = reduction
        if need_grad:
            ctx.save_for_backward(grad)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            go = grad_output.to(grad.dtype)
            grad = grad * (go[:, None] if grad.dim() == 2 else go)
        elif not (grad_output.numel() == 1 and float(grad_output) == 1.0):
            grad = grad * grad_output.to(grad.dtype)
        return grad, None, None, None, None, None, None, None


def apply_loss(kernel, params, input, target, *, weight=None, ignore_index=-100, reduction="mean",
               sample_weight=None, backend="auto", validate=True):
    """Run a generated loss with nn.CrossEntropyLoss's weight / ignore_index / reduction semantics."""
    if reduction not in REDUCTIONS:
        raise LossParamError(f"{kernel.name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if backend not in BACKENDS:
        raise LossParamError(f"{kernel.name}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        raise LossParamError(f"{kernel.name}: the triton backend is not available in this module")
    if kernel.form != "row" and ignore_index == -100:
        ignore_index = None  # elementwise targets are values, not classes: nothing ignored by default
    x, t, valid, shape = _flatten(kernel, input, target, ignore_index, validate)
    dtype = _compute_dtype(input.dtype)
    if valid is not None and bool(valid.all()):
        valid = None
    _, scale = _row_weights(kernel, t, valid, weight, sample_weight, shape, reduction, dtype)
    if backend == "reference":
        losses = _as_rows(kernel.loss(x.to(dtype), t, params), t.shape[0], x.to(dtype))
        if valid is not None:
            losses = torch.where(valid, losses, 0.0)
        weighted = losses if scale is None else losses * scale
        out = weighted if reduction == "none" else weighted.sum()
        out = out.to(input.dtype)
    else:
        need_grad = torch.is_grad_enabled() and input.requires_grad
        out = _Fused.apply(x, kernel, t, valid, scale, params, reduction, need_grad)
    return out.reshape(shape) if reduction == "none" else out
