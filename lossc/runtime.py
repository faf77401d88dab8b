# lossc runtime: the skeleton every generated module shares. It is copied verbatim into
# compiled modules (so they are self-contained) and imported by lossc itself.
# It holds no math of any loss: the generated functions `loss` / `loss_and_grad` do.
import functools
import math
from typing import List as _List, Optional as _Optional, Tuple as _Tuple

import torch

try:
    from lossc.errors import LossInputError, LossParamError
except ImportError:  # a compiled module used without lossc installed
    class LossInputError(ValueError):
        """Tensors given to a loss have the wrong shape, dtype or values."""

    class LossParamError(ValueError):
        """A parameter value is missing, of the wrong type or violates a constraint."""

#: the interface generated modules import; a module generated for another version refuses to load
RUNTIME_VERSION = 1

REDUCTIONS = ("none", "mean", "sum")
BACKENDS = ("auto", "torch", "reference", "triton")
CHUNK_ELEMENTS = 1 << 21  # rows are processed in chunks of about this many logits


class _Softplus(torch.autograd.Function):
    """relu(x) + log1p(exp(-|x|)) whose derivative is sigmoid(x): 1/2 at x = 0, where autograd of that
    expression gives relu's 0 + abs's 0 (the reference backend at a zero-initialised head)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.relu(x) + torch.log1p(torch.exp(-torch.abs(x)))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


def _softplus(x, out=None, tmp=None):
    # (with out and tmp, buffers of x's shape that x is not: the same operations, written into them)
    if out is None:
        if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
            return _Softplus.apply(x)
        return torch.relu(x) + torch.log1p(torch.exp(-torch.abs(x)))
    torch.abs(x, out=out).neg_().exp_().log1p_()
    return torch.add(torch.clamp_min(x, 0, out=tmp), out, out=out)


def _log_softplus(x):
    """log(softplus(x)): x + log1p(-e^x / 2) below -20 (softplus(x) = e^x - e^(2x)/2 + ...; e^x underflows
    below -745), log(softplus(x)) above; each branch fed values where it is finite, so that autograd's
    gradient through the branch not taken is 0, not NaN."""
    small = x < -20
    low = x + torch.log1p(-0.5 * torch.exp(torch.where(small, x, -20.0)))
    high = torch.log(_softplus(torch.where(small, 0.0, x)))
    return torch.where(small, low, high)


class _Digamma(torch.autograd.Function):
    """torch.digamma whose backward is _trigamma (torch's own backward, polygamma(1, .), is about 1e-9 accurate)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.digamma(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _trigamma(x)


def _digamma(x):
    if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
        return _Digamma.apply(x)
    return torch.digamma(x)


def _trigamma(x):
    """psi'(x) to the dtype's accuracy (torch.polygamma(1, .) is about 1e-9 on the CPU, short of float64): shifted
    up to z >= 20 (psi'(x) = psi'(z) + sum 1 / (x + k)^2) and the asymptotic series there (its next term is below
    1e-17); the reflection psi'(x) = pi^2 / sin^2(pi x) - psi'(1 - x) below 1/2."""
    small = x < 0.5
    z = torch.where(small, 1 - x, x)
    total = torch.zeros_like(z)
    for _ in range(20):
        below = z < 20
        total = total + torch.where(below, 1 / (z * z), 0.0)
        z = torch.where(below, z + 1, z)
    w = 1 / (z * z)
    value = total + (1 + 0.5 / z + w * (1 / 6 + w * (-1 / 30 + w * (1 / 42 + w * (-1 / 30 + w * 5 / 66))))) / z
    s = torch.sin(math.pi * x)
    return torch.where(small, math.pi ** 2 / (s * s) - value, value)


def _step(x):
    return (x > 0).to(x.dtype)


def _heaviside(x, out=None, mask=None):
    if out is None:
        return torch.where(x > 0, 1.0, torch.where(x < 0, 0.0, 0.5)).to(x.dtype)
    out.fill_(0.5).masked_fill_(torch.lt(x, 0, out=mask), 0.0)
    return out.masked_fill_(torch.gt(x, 0, out=mask), 1.0)


def _logratio(d, out=None, tmp=None, mask=None):
    # d / (1 - exp(d)) for d <= 0, with its limit -1 at d = 0 (no 0/0, also under autograd)
    if out is None:
        den = -torch.expm1(d)
        zero = den == 0
        return torch.where(zero, -1.0, d / torch.where(zero, 1.0, den))
    den = torch.expm1(d, out=tmp).neg_()
    zero = torch.eq(den, 0, out=mask)
    torch.div(d, den.masked_fill_(zero, 1.0), out=out)
    return out.masked_fill_(zero, -1.0)


def _where(cond, a, b, out):
    """torch.where(cond, a, b) written into out (numbers taken in out's dtype, as torch.where takes them)."""
    a = a if isinstance(a, torch.Tensor) else _constant(a, out)
    b = b if isinstance(b, torch.Tensor) else _constant(b, out)
    return torch.where(cond, a, b, out=out)


class _PowFinite(torch.autograd.Function):
    """x ** g whose derivative g x^(g-1) at x = 0, infinite for g < 1, is taken as 0 there (as abs' and
    pos' at 0), the rule of the fused backends: so autograd of (1 - p) ** 0.5 where p rounds to 1, or of
    pos(p - clip) ** g below the clip, gives 0 instead of inf * 0 = NaN. Where no gradient arrives (0), none
    leaves: a where's branch not taken holds a base outside the power's domain as often as not (sympy moves
    a power into the branches of a where: (smooth_hinge())^1.5 holds (1/2 - m)^(3/2) for m <= 0), and
    autograd would give 0 * NaN there."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x)
        ctx.g = g
        return torch.pow(x, g)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.g == 0:  # x^0 = 1: 0, not 0 * x^-1, inf * 0 once x is subnormal (1/x past the largest float)
            return torch.zeros_like(grad), None
        slope = torch.pow(x, ctx.g - 1)
        if ctx.g < 1:
            slope = slope.masked_fill(x == 0, 0.0)
        return torch.where(grad == 0, 0.0, grad * ctx.g * slope), None


def _pow(x, g):
    # x ** g for a number g that may be fractional; see _PowFinite for its derivative at 0 (0 for g < 1)
    if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
        return _PowFinite.apply(x, g)
    return torch.pow(x, g)


def _constant(x, like):
    # x (a number) as a 0-d tensor of like's dtype and device
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _per_class(x, z):
    # x (a number, or one value per row [N, 1]) as a value per class, z's shape [N, C]; a truth value stays one
    if isinstance(x, bool) or isinstance(x, torch.Tensor) and x.dtype == torch.bool:
        return torch.broadcast_to(torch.as_tensor(x, device=z.device), z.shape)
    return torch.broadcast_to(torch.as_tensor(x, dtype=z.dtype, device=z.device), z.shape)


def _flag(x, like):
    # x (a Python bool: a test of parameters alone) as a 0-d bool tensor on like's device
    return torch.as_tensor(bool(x), device=like.device)


def _detach(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def _scalar(fn, x):
    return float(fn(torch.tensor(float(x), dtype=torch.float64)))


def _into(out, x, c):
    """out = x * c: x (a tensor or number) broadcast to out's shape, c the row coefficients (a column,
    or None for 1)."""
    x = torch.as_tensor(x, dtype=out.dtype, device=out.device).expand_as(out)
    return out.copy_(x) if c is None else torch.mul(x, c, out=out)


def _times(x, c):
    """x * c in place (c the row coefficients, or None for 1)."""
    return x if c is None else x.mul_(c)


def _affine(x, k, m, z, l, c):
    """x = (k * x + m * z + l) * c in place (k, m, l, c: row columns or numbers; c None for 1)."""
    def given(v, unit):  # v * c, or None where that leaves x as it is
        if not isinstance(v, torch.Tensor) and v == unit and (c is None or unit == 0):
            return None
        return v if c is None else v * c
    k, m, l = given(k, 1), given(m, 0), given(l, 0)
    if k is not None:
        x.mul_(k)
    if m is not None:
        x.addcmul_(z, torch.as_tensor(m, dtype=x.dtype, device=x.device))
    if l is not None:
        x.add_(l)
    return x


def _exp_floor(dtype):
    """A floor for exponents: exp near and below log(smallest normal number) takes the CPU's slow path
    (measured 5-25x); exp(floor) is 1000 times that number."""
    return math.log(torch.finfo(dtype).tiny) + 7.0


@functools.lru_cache(maxsize=None)
def _exp_of_floor(dtype) -> float:
    """exp(_exp_floor) as the dtype computes it: the value every floored exponent leaves."""
    return torch.tensor(_exp_floor(dtype), dtype=dtype).exp().item()


def _floored_exp_(x):
    """exp(x) in place, 0 where x is below _exp_floor (NaN stays NaN): the exponent is clamped to the floor
    and what the floor left is set to 0. exp(floor) itself (1.3e-35 in float32) is no 0 a huge factor cannot
    see: softmax(z)[y] |log_softmax(z)[y]|^5 at p_y = e^-8535 was 5.8e-16 (4.5e19 exp(floor)), truth 0."""
    x.clamp_(min=_exp_floor(x.dtype)).exp_()
    return torch.nn.functional.threshold_(x, _exp_of_floor(x.dtype), 0.0)


def _exp_shifted(z, top, out):
    """exp(z - top) written into out, 0 for exponents below _exp_floor."""
    return _floored_exp_(torch.sub(z, top, out=out))


def _exp_affine(out, z, m, l_class, l_row, k, c):
    """out = k * exp(m * z + l_class + l_row) * c, in place (l_class: a class vector, the rest row columns
    or numbers; c None for 1)."""
    torch.mul(z, torch.as_tensor(m, dtype=out.dtype, device=out.device), out=out)
    for l in (l_class, l_row):
        if isinstance(l, torch.Tensor) or l != 0:
            out.add_(l)
    _floored_exp_(out)
    return _affine(out, k, 0, z, 0, c)


def _set_target(grad, t, own, c):
    """grad[i, t[i]] = own[i] * c[i] (with a class group: the rows whose target class this rank holds)."""
    own = torch.as_tensor(own, dtype=grad.dtype, device=grad.device).expand(grad.shape[0], 1)
    value = own if c is None else own * c
    if _SHARD is None:
        return grad.scatter_(1, t[:, None], value)
    index, owned = _local_targets(t, grad.shape[1])
    return grad.scatter_(1, index, torch.where(owned, value, grad.gather(1, index)))


# ---------------------------------------------------------------------------------------------
# The validity agreement of a call over a process group (batch_group, class_group). Before the call's first
# reduction its ranks all-reduce (MAX) one small int64 vector: the lowest rank whose checks failed, with the
# class of its error, and a signature of the call, each field as its largest and its smallest value over the
# ranks (with the lowest rank holding each). Where a rank failed, or the ranks disagree, every rank raises
# the same LossError naming the rank at fault (the failed rank's message is broadcast to the others), instead
# of one rank raising while the others wait in their next all-reduce, or the ranks issuing different ones.

_AGREED_ERRORS = (None, LossInputError, LossParamError, LossInputError)  # by code; 3: any other exception
_MESSAGE_BYTES = 1024
_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
_ENGINES = ("reference", "torch", "triton")


class _Agreement:
    """The agreement of one call over a process group, made once per call on every rank: at the call's first
    reduction (``agree``), at its first error (``fail``) or at its end, whichever comes first. fields: the
    signature, (what, show) for each of its values, show(value) a phrase or None; extra: the number of further
    ints all-reduced with MAX (the same on every rank, so that every rank's vector has the same length).
    ``active`` False (validate=False on a batch_group): nothing is exchanged. A process outside the group is
    refused."""

    def __init__(self, name, group, kind, like, fields=(), extra=0, active=True):
        import torch.distributed as dist  # (a local import: the runtime's globals are names a spec may not use)
        self.name, self.group, self.kind, self.fields, self.extra = name, group, kind, fields, extra
        self.world, self.rank = dist.get_world_size(group), dist.get_rank(group)
        if self.rank < 0:
            raise LossParamError(f"{name}: this process is not in the {kind} (torch.distributed would leave it "
                                 "out of the all-reduce)")
        if isinstance(like, torch.Tensor):
            self.device = like.device
        else:  # (no tensor to follow: the device the group's backend communicates on)
            self.device = torch.device("cuda", torch.cuda.current_device()) \
                if "nccl" in str(dist.get_backend(group)) else torch.device("cpu")
        self.done = not active

    def fail(self, error):
        """The agreement of a rank whose call raised ``error`` (nothing if it was already made)."""
        if not self.done:
            self.agree(error=error)

    def agree(self, values=(), extra=(), error=None):
        """Make the agreement (once). values: the signature's, ints in [0, 2^31); extra: self.extra ints,
        returned all-reduced (both ignored where error). Raises the agreed LossError, if any."""
        import torch.distributed as dist
        if self.done:
            return None
        self.done = True
        W, r, fields = self.world, self.rank, self.fields
        code = 0 if error is None else 1 if isinstance(error, LossInputError) else \
            2 if isinstance(error, LossParamError) else 3
        packed = [(W - r) * 4 + code if code else 0]
        for value in ([0] * len(fields) if error is not None or not fields else values):
            packed += [int(value) * W + W - 1 - r, -int(value) * W + W - 1 - r]
        packed += [0] * self.extra if error is not None or not self.extra else [int(v) for v in extra]
        vector = torch.tensor(packed, dtype=torch.int64, device=self.device)
        dist.all_reduce(vector, op=dist.ReduceOp.MAX, group=self.group)
        reduced = vector.tolist()
        if reduced[0]:
            self._failed(W - reduced[0] // 4, reduced[0] % 4, error)
        for i, (what, show) in enumerate(fields):
            (high, a), (low, b) = divmod(reduced[1 + 2 * i], W), divmod(reduced[2 + 2 * i], W)
            if high != -low:
                a, b, high, low = W - 1 - a, W - 1 - b, high, -low
                first, second = sorted([(a, high), (b, low)])
                said = f"rank {first[0]} and rank {second[0]} differ in it" if show is None else \
                    f"rank {first[0]} {show(first[1])}, rank {second[0]} {show(second[1])}"
                raise LossInputError(f"{self.name}: the ranks of the {self.kind} disagree on {what}: {said}; "
                                     f"every rank of the {self.kind} must make the same call")
        return reduced[1 + 2 * len(fields):]

    def _failed(self, fault, code, error):
        """Every rank raises the error of rank ``fault`` (its message broadcast from it)."""
        import torch.distributed as dist
        buffer = torch.zeros(_MESSAGE_BYTES, dtype=torch.uint8, device=self.device)
        if self.rank == fault:
            text = str(error) if code != 3 else f"{type(error).__name__}: {error}"
            data = text.encode()[:_MESSAGE_BYTES]
            buffer[:len(data)] = torch.tensor(list(data), dtype=torch.uint8)
        dist.broadcast(buffer, src=dist.get_global_rank(self.group, fault) if self.group is not None else fault,
                       group=self.group)
        text = bytes(buffer.cpu().tolist()).rstrip(b"\0").decode(errors="replace")
        text = text[len(self.name) + 2:] if text.startswith(f"{self.name}: ") else text
        if self.rank == fault and code == 3:
            raise error  # (an unexpected error: its own traceback on its rank; a LossError on the others)
        raise _AGREED_ERRORS[code](f"{self.name}: on rank {fault} of the {self.kind} (of {self.world} ranks): "
                                   f"{text}") from error


def _agreed(agreement, run, *args):
    """run(*args), calling agreement.agree before its first reduction, with the agreement made at its end if
    it made none (no reduction ran) or at its error (then every rank raises the agreed error)."""
    try:
        out = run(*args)
    except Exception as error:
        agreement.fail(error)
        raise
    agreement.agree()
    return out


def _options_hash(*options):
    """A 31-bit hash of the options of a call (its repr), for the signature."""
    import zlib
    return zlib.crc32(repr(options).encode()) & 0x7FFFFFFF


def _dtype_code(dtype):
    return _DTYPES.index(dtype) if dtype in _DTYPES else len(_DTYPES)


_SHOW_DTYPE = ("the input's dtype",
               lambda v: f"passes {str(_DTYPES[v]).removeprefix('torch.') if v < len(_DTYPES) else 'another dtype'}")
_SHOW_ENGINE = ("the engine", lambda v: f"runs the {_ENGINES[v]} engine")
_SHOW_OPTIONS = ("the loss and its options (parameters, reduction, ignore_index, from_logits, positions, "
                 "inplace_grad)", None)
_ROW_FIELDS = (("the rows", lambda v: f"holds {v} rows"), _SHOW_DTYPE,
               ("the layout", lambda v: f"passes a {v}-d input"), _SHOW_ENGINE,
               ("the gradient", lambda v: "needs the input's gradient" if v else "does not"),
               ("class weights", lambda v: "passes them" if v else "passes none"),
               ("validate", lambda v: f"passes validate={bool(v)}"), _SHOW_OPTIONS)
_BATCH_FIELDS = (_SHOW_DTYPE, _SHOW_ENGINE, _SHOW_OPTIONS)


# ---------------------------------------------------------------------------------------------
# The class reductions and target gathers of the row form. Without a class group they are plain torch.
# With one (``class_group``: each rank holds a contiguous block of every row's classes) each is a local
# reduction followed by an all-reduce, so that every rank gets the whole row's value: a sum is summed,
# a max maxed, a logsumexp is a global max then an all-reduced sum of exp(x - max), and the target's entry
# comes from the rank that holds the target class. ``_SHARD`` is set by apply_loss around one call.

_SHARD = None


class _Shard:
    """A class group: the process group, this rank's first class, the number of classes C of the rows and the
    call's validity agreement (made before its first row reduction, see _Agreement)."""

    def __init__(self, group, offset, classes, agreement):
        self.group, self.offset, self.classes, self.agreement = group, offset, classes, agreement


def _num_classes(z):
    return z.shape[1] if _SHARD is None else _SHARD.classes


def _all_reduce(local, op):
    """A row column reduced over the class group ("sum" or "max"): the same value on every rank. Under
    autograd (the reference backend; sums alone, see _row_max) its backward all-reduces the gradient too,
    so the gradient of every rank's loss reaches the classes of every rank."""
    import torch.distributed as dist  # (a local import: the runtime's globals are names a spec may not use)
    _SHARD.agreement.agree()  # (the first reduction of a call: its ranks agree that every one's input is valid)
    if local.requires_grad:
        return _AllReduceSum.apply(local, _SHARD.group)
    total = local.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=_SHARD.group)
    return total


class _AllReduceSum(torch.autograd.Function):
    """A sum over the ranks whose backward all-reduces the gradient (a sum too): the gradient of the sum
    of the ranks' losses, which _shared_loss makes the gradient of the loss. Every rank calls backward."""

    @staticmethod
    def forward(ctx, local, group):
        import torch.distributed as dist
        ctx.group = group
        total = local.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


class _SharedLoss(torch.autograd.Function):
    """The loss as it is, with its gradient divided by the number of ranks W: every rank computes the same
    loss L from all ranks' classes and back-propagates it, so the all-reduced backward sums W copies of
    dL/dz; each rank's share of 1/W makes every rank's classes get exactly dL/dz."""

    @staticmethod
    def forward(ctx, loss, ranks):
        ctx.ranks = ranks
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.ranks, None


def _shared_loss(loss):
    """The reference loss of one call under a class group (see _SharedLoss)."""
    import torch.distributed as dist
    if _SHARD is None or not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        return loss
    return _SharedLoss.apply(loss, dist.get_world_size(_SHARD.group))


def _row_sum(x):
    s = torch.sum(x, 1, keepdim=True)
    return s if _SHARD is None else _all_reduce(s, "sum")


def _row_max(x):
    if _SHARD is None:
        return torch.amax(x, 1, keepdim=True)
    m = _all_reduce(torch.amax(x.detach(), 1, keepdim=True), "max")
    if not x.requires_grad:
        return m
    # under autograd: m plus a zero that carries torch.amax's gradient, split evenly over the tied
    # entries of all ranks (a sum over the ranks, so that the backward reaches the ranks that hold them)
    top = x.detach() == m
    s = _row_sum(torch.where(top & torch.isfinite(x.detach()), x, 0.0))
    return m + (s - s.detach()) / _row_sum(top.to(x.dtype))


def _row_lse(x):
    if _SHARD is None:
        return torch.logsumexp(x, 1, keepdim=True)
    m = _all_reduce(torch.amax(x.detach(), 1, keepdim=True), "max")
    m = torch.where(torch.isfinite(m), m, 0.0)  # (as torch.logsumexp: rows of -inf stay -inf)
    return m + torch.log(_all_reduce(torch.sum(torch.exp(x - m), 1, keepdim=True), "sum"))


def _row_lse_(x, normalize=False):
    """_row_lse of a fresh tensor x [m, C] that it overwrites, with exponents below _exp_floor as 0 (the
    sum, at least 1, changes by less than C exp(floor)), leaving softmax(x) there with ``normalize``;
    not under autograd."""
    top = torch.amax(x, 1, keepdim=True)
    if _SHARD is not None:
        top = _all_reduce(top, "max")
    shift = torch.where(torch.isfinite(top), top, 0.0)
    total = _floored_exp_(x.sub_(shift)).sum(1, keepdim=True)
    if _SHARD is not None:
        total = _all_reduce(total, "sum")
    if normalize:
        x.div_(total)
    return torch.where(top == -math.inf, top, shift + torch.log(total))


def _local_targets(t, width):
    """(this rank's column of each row's target [m, 1], clamped into its block; whether it holds it [m, 1])."""
    local = t - _SHARD.offset
    owned = (local >= 0) & (local < width)
    return local.clamp(0, width - 1)[:, None], owned[:, None]


def _at_target(x, t):
    """x[i, t[i]] as a column [m, 1], x a tensor [m, C] or a class vector [1, C]."""
    x = x.expand(t.shape[0], x.shape[1])
    if _SHARD is None:
        return x.gather(1, t[:, None])
    index, owned = _local_targets(t, x.shape[1])
    return _all_reduce(torch.where(owned, x.gather(1, index), 0), "sum")


def _exclude_target(x, t, fill):
    """x with x[i, t[i]] = fill, out of place (under autograd); x [m, C], or a class vector [1, C]."""
    x = x.expand(t.shape[0], x.shape[1])
    if _SHARD is None:
        return torch.scatter(x, 1, t[:, None], fill)
    index, owned = _local_targets(t, x.shape[1])
    return torch.scatter(x, 1, index, torch.where(owned, torch.as_tensor(fill, dtype=x.dtype), x.gather(1, index)))


def _exclude_target_(x, t, fill):
    """x[i, t[i]] = fill, in place (x a fresh tensor; a class vector [1, C] is first made rows [m, C])."""
    if x.shape[0] != t.shape[0]:
        x = x.expand(t.shape[0], x.shape[1]).clone()
    if _SHARD is None:
        return x.scatter_(1, t[:, None], fill)
    index, owned = _local_targets(t, x.shape[1])
    return x.scatter_(1, index, torch.where(owned, torch.as_tensor(fill, dtype=x.dtype), x.gather(1, index)))


class _ZeroGradient(torch.autograd.Function):
    """A loss that does not depend on its input, still a node of the input's graph: its gradient is 0
    (as the torch engine's), so that ``loss.backward()`` works whatever the body reads."""

    @staticmethod
    def forward(ctx, value, input):
        ctx.shape, ctx.dtype, ctx.device = input.shape, input.dtype, input.device
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, torch.zeros(ctx.shape, dtype=ctx.dtype, device=ctx.device)


def _connected(out, input):
    """out, attached to input's graph with gradient 0 when the body did not read the input."""
    if torch.is_grad_enabled() and input.requires_grad and not out.requires_grad:
        return _ZeroGradient.apply(out, input)
    return out


def _as_rows(x, count, like):
    """A per-row (or per-element) result, whatever broadcast shape the expression had, as [count]."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return x.reshape(-1).expand(count) if x.numel() == 1 else x.reshape(count)


class _Pool:
    """The buffers of a fused program (``_loss_and_grad``), kept across the chunks of one call of the torch
    engine: its temporaries are allocated, and their pages faulted in, once per call instead of once per
    operation and chunk. Sized by the first chunk (the largest); a later, smaller one gets the buffers'
    leading rows."""

    def __init__(self):
        self.buffers = {}

    def take(self, like, layout):
        """The buffers of one chunk: one per letter of layout, c [m, C], r [m, 1], k [1, C], e [m] (like: the
        chunk, z [m, C] or u [m]; upper case: bool)."""
        m = like.shape[0]
        held = self.buffers.get(layout)
        if held is None or any(b.shape[0] < m for b, k in zip(held, layout) if k not in "kK") \
                or held[0].device != like.device or any(b.dtype != like.dtype for b, k in zip(held, layout)
                                                         if k.islower()):
            held = self.buffers[layout] = [_buffer(like, k) for k in layout]
        return [b if k in "kK" else b[:m] for b, k in zip(held, layout)]


def _buffer(like, letter):
    kind = letter.lower()
    shape = tuple(like.shape) if kind in "ce" else (like.shape[0], 1) if kind == "r" else (1, like.shape[1])
    return torch.empty(shape, dtype=torch.bool if letter.isupper() else like.dtype, device=like.device)


def _buffers(pool, like, layout):
    """The buffers of a fused program for one chunk (see _Pool); fresh ones without a pool."""
    return pool.take(like, layout) if pool is not None else [_buffer(like, k) for k in layout]


class Kernel:
    """The generated functions of one loss: ``loss(z, t, P)`` (differentiable torch ops: the
    ``reference`` backend runs it under autograd), ``loss_and_grad(z, t, P)`` (the torch engine; None
    in a module compiled for triton alone) and ``triton`` (the launcher of its triton kernels, or None).
    ``layout`` lists the runtime parameters as (name, None) for a number or (name, size) for a vector.
    ``op`` is the fused loss as one ``torch.library`` custom op (see ``_register``)."""

    def __init__(self, name, spec_hash, form, target, layout, loss, loss_and_grad, triton=None, plain=None,
                 chunk=None):
        self.name, self.spec_hash, self.form, self.target, self.layout = name, spec_hash, form, target, layout
        # the one place the runtime reads the form's name (it stands alone, without lossc.forms, in a
        # --standalone module): rows [N, C, d1, ...] of classes, or elements of any shape
        self.rows = form == "row"
        self.chunk = chunk or CHUNK_ELEMENTS  # elements per chunk of the torch engine (tests make it small)
        self.loss, self.loss_and_grad, self.triton = loss, loss_and_grad, triton
        self.plain = plain  # (loss, loss_and_grad) at weight = 1, for a loss reading weight[j] called without
        self.op, self.scale_op = _register(self)

    def functions(self, values):
        """(loss, loss_and_grad) for these parameter values: the plain pair when no class weights came."""
        if self.plain is not None and values.weight is None:
            return self.plain
        return self.loss, self.loss_and_grad


class _Values:
    """The parameters of a loss rebuilt from what the custom op carries: the flat list of floats
    and the class vectors (tensors [C])."""

    def __init__(self, layout, flat, classes):
        i = k = 0
        for name, size in layout:
            if size == "class":
                setattr(self, name, classes[k] if classes[k].numel() else None)  # (empty: not given)
                k += 1
            elif size is None:
                setattr(self, name, flat[i])
                i += 1
            else:
                setattr(self, name, tuple(flat[i:i + size]))
                i += size


def _flat(kernel, params):
    """The numeric runtime parameters as one list of floats, in the order of kernel.layout."""
    out = []
    for name, size in kernel.layout:
        if size == "class":
            continue
        value = getattr(params, name)
        if size is None:
            out.append(float(value))
        else:
            out.extend(float(v) for v in value)
    return out


def _uses_weight(kernel):
    """Whether the loss's body reads the class weights itself (``weight[j]``, ``weight[y]``)."""
    return ("weight", "class") in kernel.layout


def _class_tensors(kernel, params, weight, input, engine="torch"):
    """The class vectors of kernel.layout as tensors [1, C] in the compute dtype, on the input's device:
    per-class parameters (a number stands for every class) and the call's class weights (1 if none;
    for the torch engines an empty tensor, which selects the module's plain functions)."""
    if input.dim() < 2:
        return []
    C, dtype = _num_classes(input), _compute_dtype(input.dtype)
    out = []
    for name, size in kernel.layout:
        if size != "class":
            continue
        value = weight if name == "weight" else getattr(params, name)
        if value is None and kernel.plain is not None and engine != "triton":
            out.append(torch.empty(0, dtype=dtype, device=input.device))  # no weights: the plain functions
            continue
        if value is None:
            value = 1.0
        value = torch.as_tensor(value, dtype=dtype, device=input.device)
        if value.dim() == 0:
            value = value.expand(C)
        if value.dim() != 1 or value.shape[0] != C:
            what = "weight" if name == "weight" else f"per-class parameter {name}"
            raise LossInputError(f"{kernel.name}: {what} has {value.numel()} values (shape "
                                 f"{list(value.shape)}), but the input has C = {C} classes")
        if _SHARD is not None:  # the whole vector on every rank: this rank's block of it
            value = value[_SHARD.offset:_SHARD.offset + input.shape[1]]
        out.append(value.reshape(1, -1).contiguous())  # a row: broadcasts against [m, C]
    return out


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _compiling():
    return torch.compiler.is_compiling()


def _targets(kernel, input, target, ignore_index, validate, convert=True):
    """(t [M], valid [M] or None, shape of the unreduced loss) from the target, checked against the
    input. Row form: t holds class indices (int64), 0 where ignored. Elementwise: t in the compute
    dtype. ``convert=False`` (the triton kernels, which convert targets and drop ignored rows themselves):
    as given, ignored rows included."""
    if not isinstance(input, torch.Tensor) or not input.is_floating_point():
        raise LossInputError(f"{kernel.name}: input must be a floating-point tensor")
    if not isinstance(target, torch.Tensor):
        raise LossInputError(f"{kernel.name}: target must be a tensor")
    if kernel.rows and input.dim() < 2:
        raise LossInputError(f"{kernel.name}: input must be [N, C] or [N, C, d1, ...], got {list(input.shape)}")
    if kernel.rows and _num_classes(input) < 2:  # (docs/semantics.md, "Edge shapes")
        raise LossInputError(f"{kernel.name}: input has C = {_num_classes(input)} classes (shape "
                             f"{list(input.shape)}); a class loss needs C >= 2 (with one class p_t = 1 and the "
                             "loss is constant or 0/0): for one logit per element use a binary loss (bce)")
    if kernel.target == "distribution":
        if tuple(target.shape) != tuple(input.shape) or not target.is_floating_point():
            raise LossInputError(f"{kernel.name}: target must hold class probabilities: a floating-point tensor "
                                 f"of the input's shape {list(input.shape)}, got {target.dtype} "
                                 f"{list(target.shape)}")
        if ignore_index not in (None, -100):
            raise LossParamError(f"{kernel.name}: ignore_index has no meaning for probability targets")
        if convert:
            q = _rows(kernel, target).to(_compute_dtype(input.dtype))
        else:  # the triton kernels: [N, C, S] as it is (they load it in its own dtype)
            q = target.reshape(input.shape[0], input.shape[1], math.prod(input.shape[2:]))
        if validate and q.numel():
            if not bool(torch.isfinite(q).all()):
                raise LossInputError(f"{kernel.name}: target holds NaN or infinite probabilities")
            if bool((q < 0).any()):
                raise LossInputError(f"{kernel.name}: target holds negative probabilities")
        return q, None, (input.shape[0],) + tuple(input.shape[2:])
    if kernel.rows:
        expected = (input.shape[0],) + tuple(input.shape[2:])
        if tuple(target.shape) != expected:
            raise LossInputError(f"{kernel.name}: target must have shape {list(expected)} for input "
                                 f"{list(input.shape)}, got {list(target.shape)}")
        if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise LossInputError(f"{kernel.name}: target must hold class indices (an integer tensor), "
                                 f"got {target.dtype}")
        C = _num_classes(input)  # (with a class group: all ranks' classes; targets are global indices)
        validate = validate or _SHARD is not None  # (there, a class outside [0, C) is on no rank: never dropped)
        t = target.reshape(-1).long()
        # the common case (every class in range, none ignored) by one reduction: no mask at all. It needs
        # a host sync, so it runs where one is paid anyway (validate) or costs nothing (eager, the CPU)
        if t.numel() and (validate or t.device.type == "cpu" and _eager(t)):
            low, high = (int(v) for v in torch.aminmax(t))
            if 0 <= low and high < C and (ignore_index is None or not low <= ignore_index <= high):
                return t, None, tuple(target.shape)
        valid = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
        if validate and t.numel():
            bad = valid & ((t < 0) | (t >= C))
            if bool(bad.any()):
                value = int(t[bad][0])
                raise LossInputError(f"{kernel.name}: target holds class index {value}, outside [0, {C}) "
                                     f"(ignore_index is {ignore_index})")
        if convert:  # (the triton kernels take the classes as given and drop the rows valid marks)
            t = torch.where(valid, t, 0)
        return t, valid, tuple(target.shape)
    if tuple(target.shape) != tuple(input.shape):
        raise LossInputError(f"{kernel.name}: target must have the input's shape {list(input.shape)}, "
                             f"got {list(target.shape)}")
    t = target.reshape(-1)
    if convert or validate:
        t = t.to(_compute_dtype(input.dtype))
    valid = None
    if ignore_index is not None:
        valid = t != ignore_index
        if convert:
            t = torch.where(valid, t, 0.0)
    if validate and t.numel() and not _targets_plainly_fine(kernel, t):  # (then the checks name the culprit)
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
    if not convert:
        t = target.reshape(-1)
    return t, valid, tuple(input.shape)


def _targets_plainly_fine(kernel, t):
    """One reduction (aminmax) that passes the usual elementwise targets: no NaN anywhere and, for binary
    targets, every value in [0, 1] (NaN compares false). Sign targets (exactly -1 or 1) need the full check."""
    if kernel.target == "sign":
        return False
    low, high = (float(v) for v in torch.aminmax(t))
    if kernel.target == "binary":
        return 0.0 <= low and high <= 1.0
    return low == low and high == high


def _rows(kernel, input):
    """The input as rows [M, C] (row form) or elements [M]: a view (or a moved copy) of it, so that
    autograd carries the gradient back."""
    if kernel.rows:
        return input.movedim(1, -1).reshape(-1, input.shape[1])
    return input.reshape(-1)


def _scaling(kernel, t, valid, weight, sample_weight, shape, reduction, dtype):
    """The per-row factors of the loss as (w [M] or None, den (a 0-d tensor) or None, mul): row i
    counts w[i] * mul / den times — nn.CrossEntropyLoss's weights and mean. A loss that reads the
    class weights in its body (``weight[j]``) is not scaled by them again, but its mean still divides
    by the kept rows' weights (as nn.CrossEntropyLoss with label_smoothing); with probability targets
    the mean divides by the number of rows (as nn.CrossEntropyLoss with probability targets)."""
    w = None
    if weight is not None and kernel.target == "distribution":
        if not _uses_weight(kernel):
            raise LossParamError(f"{kernel.name}: this loss does not read class weights (weight[j] in its body)")
    elif weight is not None:
        if kernel.rows:
            w = weight.to(dtype)[t if valid is None else torch.where(valid, t, 0)]
        else:
            try:
                w = torch.broadcast_to(weight.to(dtype), shape).reshape(-1)
            except RuntimeError:
                raise LossInputError(f"{kernel.name}: weight must broadcast to the input's shape {list(shape)}, "
                                     f"got {list(weight.shape)}") from None
    if valid is not None and w is not None:
        w = w * valid  # (without weights, the engines drop ignored rows by valid alone)
    # The mean's divisor: the kept rows' class weights (nn.CrossEntropyLoss); for elementwise
    # kinds the number of kept elements (nn.BCELoss: weight rescales, the mean stays a mean).
    den, mul = None, 1.0
    if reduction == "mean":
        if kernel.rows and w is not None:
            den = w.sum()
        elif valid is not None:
            den = valid.sum(dtype=dtype)
        elif math.prod(shape):  # (t may be soft targets [N, C, S]: count the loss's entries)
            mul = 1.0 / math.prod(shape)
    if _uses_weight(kernel):
        w = None  # the body applies them
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
    return w, den, mul


def _scale_of(w, den, mul, dtype):
    """The per-row factors: a tensor [M] (weights given), one number or 0-d tensor for every row (a
    mean's divisor), or None when every row counts once."""
    if w is None and den is None and mul == 1.0:
        return None
    if w is None:
        return mul if den is None else (mul / den).to(dtype)
    scale = w.to(dtype) if mul == 1.0 else w.to(dtype) * mul
    return scale if den is None else scale / den


def _fused_chunk(loss_and_grad, x, t, params, out, scale, kept, pool):
    """One chunk of a fused program: the loss per row, and the gradient written into ``out`` times each row's
    coefficient (``scale``; 0 for an ignored row, whose gradient is exact zeros even where it is not finite)."""
    c = scale if kept is None else kept.to(out.dtype) if scale is None else torch.where(kept, scale, 0.0)
    if isinstance(c, torch.Tensor) and c.dim() == 1 and x.dim() > 1:
        c = c[:, None]
    loss, g = loss_and_grad(x, t, params, out, c, pool)
    if g is not out:
        out.copy_(g)
    if kept is not None:
        out[~kept] = 0.0
    return loss


def _torch_engine(kernel, x, t, valid, w, den, mul, params, reduction, need_grad, into=None):
    """Loss and gradient with the generated torch functions, chunk by chunk of rows. The gradient of
    each chunk is written straight into the result (or, for half-precision inputs, into one float32
    scratch buffer), already multiplied by the rows' weights and the mean's divisor; a reduced loss is
    summed chunk by chunk (no per-element loss buffer). ``into``: the gradient's buffer (x itself for
    inplace_grad: each chunk then goes through the scratch buffer). x [N, C, S] (row form with positions,
    row n*S + s): each chunk's rows are moved into a buffer [m, C] and its gradient moved back, so
    neither the input nor the gradient is ever copied whole."""
    dtype = _compute_dtype(x.dtype)
    spatial = x.dim() == 3
    rows = x.shape[0] * x.shape[2] if spatial else x.shape[0]
    loss_fn, loss_and_grad = kernel.functions(params)
    scale = _scale_of(w, den, mul, dtype)
    per_row = isinstance(scale, torch.Tensor) and scale.dim() == 1
    width = _num_classes(x) if x.dim() >= 2 else 1  # (the same chunks on every rank of a class group)
    step = max(1, kernel.chunk // max(width, 1))
    losses = torch.empty(rows, dtype=dtype, device=x.device) if reduction == "none" else None
    total = torch.zeros((), dtype=dtype, device=x.device)
    grad = into if into is not None else \
        torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_grad else x.new_empty(0)
    pool = _Pool()  # the fused program's buffers, kept across the chunks
    weighted = None
    scratch = moved = None
    chunks = _spatial_chunks(x.shape, step) if spatial else \
        [(start, min(start + step, rows), None) for start in range(0, rows, step)]
    largest = max((end - start for start, end, _ in chunks), default=0)
    if need_grad and (grad.dtype != dtype or into is not None or spatial):
        scratch = torch.empty((largest, x.shape[1]) if spatial else (largest,) + tuple(x.shape[1:]), dtype=dtype,
                              device=x.device)
    if spatial:
        moved = torch.empty((largest, x.shape[1]), dtype=dtype, device=x.device)
    for start, end, where in chunks:
        xc = x[start:end].to(dtype) if where is None else _moved_rows(x[where], moved[:end - start])
        tc = t[start:end]
        sc = scale[start:end] if per_row else scale
        kept = None if valid is None else valid[start:end]
        if need_grad:
            out = grad[start:end] if scratch is None else scratch[:end - start]
            loss = _fused_chunk(loss_and_grad, xc, tc, params, out, sc, kept, pool)
            if where is not None:
                _move_back(out, grad[where])
            elif scratch is not None:
                grad[start:end] = out
        else:
            loss = loss_fn(xc, tc, params)
        loss = _as_rows(loss, end - start, xc)
        if kept is not None:
            loss = torch.where(kept, loss, 0.0)
        if losses is not None:
            if sc is None:
                losses[start:end] = loss
            else:
                torch.mul(loss, sc, out=losses[start:end])
        elif sc is None:
            total += loss.sum()
        else:  # (a buffer kept across the chunks, as the program's)
            if weighted is None:
                weighted = torch.empty(min(step, rows), dtype=dtype, device=x.device)
            total += torch.mul(loss, sc, out=weighted[:end - start]).sum()
    out = losses if losses is not None else total
    return out.to(x.dtype), grad


def _spatial_chunks(shape, step):
    """The chunks of rows of x [N, C, S] (row n*S + s) as (start, end, index into x): whole n's, as many
    as fit in step rows, or, where one n holds more, ranges of its positions."""
    N, _, S = shape
    if S <= step:
        per = step // max(S, 1)  # (S = 0: an empty image; no rows)
        return [(n * S, min(n + per, N) * S, (slice(n, min(n + per, N)),)) for n in range(0, N, per)]
    return [(n * S + s, n * S + min(s + step, S), (n, slice(None), slice(s, min(s + step, S))))
            for n in range(N) for s in range(0, S, step)]


def _classes_last(block):
    """A block of an [N, C, S] tensor ([n, C, S] or [C, s]) as a view with the classes last ([n, s, C] or
    [s, C]): rows of it, in order, are rows [m, C] of a chunk."""
    return block.movedim(-2, -1)


def _moved_rows(block, buffer):
    """A block of x [N, C, S] as rows [m, C] in the buffer (its dtype)."""
    view = _classes_last(block)
    buffer.view(view.shape).copy_(view)
    return buffer


def _move_back(rows, block):
    """Rows [m, C] written into their block of an [N, C, S] tensor."""
    view = _classes_last(block)
    view.copy_(rows.view(view.shape))


class _Eager(torch.autograd.Function):
    """A custom op's implementation and autograd formula run as a plain autograd.Function: what eager calls
    on plain tensors take (the same functions the op registers, without torch.library's dispatch, which
    costs several times the host time of the rest of a call: too much next to a GPU step of 0.1 ms)."""

    @staticmethod
    def forward(ctx, impl, setup_context, backward, *inputs):
        output = impl(*inputs)
        ctx.eager, ctx.eager_backward = True, backward
        ctx.tensor_inputs = tuple(isinstance(value, torch.Tensor) for value in inputs)
        setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, *grad_outputs):
        grads = ctx.eager_backward(ctx, *grad_outputs)
        return (None, None, None) + tuple(g if tensor else None for g, tensor in zip(grads, ctx.tensor_inputs))


def _eager(*tensors):
    """Whether a call may skip the custom op (see _Eager): not while compiling or exporting, under a
    dispatch mode (fake tensors, tracing, FLOP counters), under functorch transforms, or on tensor subclasses."""
    return not (_compiling() or torch._C._len_torch_dispatch_stack() or torch._C._are_functorch_transforms_active()) \
        and all(value is None or type(value) in (torch.Tensor, torch.nn.Parameter) for value in tensors)


class _Op:
    """A fused loss op: the ``torch.library`` custom op, or its functions through _Eager where _eager allows."""

    def __init__(self, op, impl, setup_context=None, backward=None):
        self.op, self.impl, self.setup_context, self.backward = op, impl, setup_context, backward

    def __call__(self, *inputs):
        if not _eager(*(value for value in inputs if isinstance(value, torch.Tensor))):
            return self.op(*inputs)
        if self.backward is None:
            with torch.no_grad():
                return self.impl(*inputs)
        return _Eager.apply(self.impl, self.setup_context, self.backward, *inputs)


def _register_scale(kernel, name, weak):
    """``scale_op(grad, grad_output)``: the triton engine's in-place grad *= grad_output as a custom op that
    declares the mutation (what torch.compile traces in the backward)."""
    def scale(grad: torch.Tensor, grad_output: torch.Tensor) -> None:
        kernel.triton.scale_(grad, grad_output)

    def fake(grad, grad_output):
        return None

    scale_op = torch.library.custom_op(name + "_scale", weak(scale), mutates_args=("grad",))
    scale_op.register_fake(weak(fake))
    return scale_op


def _scaled_grad(ctx, kernel, scale_op, grad, grad_output):
    """The fused ops' backward: the saved gradient times grad_output. The triton engine scales it in place
    (no second gradient buffer; a second backward through the same graph, retain_graph=True, is then
    refused by autograd: the saved gradient was modified), reading and writing nothing where grad_output
    is 1; the torch engine makes a new tensor, or hands the gradient back as it is for a grad_output of 1
    on the CPU (elsewhere knowing it would cost a device sync)."""
    if ctx.engine == "triton":
        if getattr(ctx, "eager", False):
            kernel.triton.scale_(grad, grad_output)
            torch.autograd.graph.increment_version(grad)  # (as scale_op, which declares it mutates grad)
        else:
            scale_op(grad, grad_output)
        return grad
    if ctx.reduction == "none":  # one value per row: grad [M, C], [N, C, S] (row n*S + s) or [M]
        go = grad_output.to(grad.dtype)
        if grad.dim() == 3:
            return grad * go.reshape(grad.shape[0], 1, grad.shape[2])
        return grad * (go[:, None] if grad.dim() == 2 else go)
    if _compiling() or not (grad_output.numel() == 1 and grad_output.device.type == "cpu"
                            and float(grad_output) == 1.0):
        return grad * grad_output.to(grad.dtype)
    return grad


def _released_with(kernel, names):
    """How a kernel's ops get their functions: torch.library keeps what it is given for the life of the
    process, so it gets each function through a weak reference (the kernel keeps the function), and the
    ops named are unregistered once the kernel is gone: a module nothing uses any more is freed whole."""
    import builtins, types, weakref  # (local imports: the runtime's globals are names a spec may not use)
    unregister = types.FunctionType(_unregister.__code__, {"__builtins__": builtins})  # (this module's
    finalizer = weakref.finalize(kernel, unregister, names)                          # globals not kept)
    finalizer.atexit = False
    kernel.registered = []
    return lambda fn: _weakly(fn, kernel.registered)


def _weakly(fn, keep):
    """fn (kept alive by ``keep``) behind a function that reaches it, and nothing else of this module, only
    through a weak reference: its globals are builtins and the names its annotations use. Same signature
    (torch.library reads it)."""
    import builtins, inspect, types, typing, weakref  # (local imports, as above)
    keep.append(fn)
    ref = weakref.ref(fn)

    def call(*args, **kwargs):
        return ref()(*args, **kwargs)

    names = {"__builtins__": builtins, "torch": torch, "_Optional": typing.Optional, "_List": typing.List,
             "_Tuple": typing.Tuple}
    call = types.FunctionType(call.__code__, names, fn.__name__, None, call.__closure__)
    call.__signature__, call.__qualname__ = inspect.signature(fn), fn.__qualname__
    return call


def _unregister(names):
    try:
        from torch._library.custom_ops import OPDEF_TO_LIB
    except ImportError:  # (another torch: its ops stay registered)
        return
    for name in names:
        library = OPDEF_TO_LIB.pop(name, None)
        if library is not None:
            library._destroy()


def _register(kernel):
    """The fused loss of a kernel as a ``torch.library`` custom op, so that ``torch.compile`` sees one
    opaque op (no graph break): ``op(x, t, valid, w, den, mul, params, reduction, engine, need_grad)
    -> (out, grad)`` computes the loss and its gradient in the forward (engine "torch": x [M, C] or
    [M]; engine "triton": x [N, C, S] or [M]); its backward only scales the saved gradient by
    grad_output (the triton engine in place, through the second op, ``scale_op(grad, grad_output)``).
    Each loaded module registers its own ops (``lossc::<name>_<hash>_<i>``)."""
    base = f"{kernel.name}_{kernel.spec_hash}"
    index = 0
    while hasattr(torch.ops.lossc, f"{base}_{index}") or hasattr(torch.ops.lossc, f"{base}_{index}_scale"):
        index += 1
    name = f"lossc::{base}_{index}"
    weak = _released_with(kernel, (name, name + "_scale"))

    def impl(x: torch.Tensor, t: torch.Tensor, valid: _Optional[torch.Tensor], w: _Optional[torch.Tensor],
             den: _Optional[torch.Tensor], mul: float, params: _List[float], classes: _List[torch.Tensor],
             reduction: str, engine: str, need_grad: bool) -> _Tuple[torch.Tensor, torch.Tensor]:
        values = _Values(kernel.layout, params, classes)
        if engine == "triton":
            return kernel.triton.forward(x, t, valid, w, den, mul, values, reduction, need_grad)
        return _torch_engine(kernel, x, t, valid, w, den, mul, values, reduction, need_grad)

    op = torch.library.custom_op(name, weak(impl), mutates_args=())

    def fake(x, t, valid, w, den, mul, params, classes, reduction, engine, need_grad):
        rows = x.shape[0] * (x.shape[2] if x.dim() == 3 else 1)
        out = x.new_empty((rows,) if reduction == "none" else ())
        return out, (x.new_empty(x.shape) if need_grad else x.new_empty(0))

    op.register_fake(weak(fake))
    scale_op = _register_scale(kernel, name, weak)

    def setup_context(ctx, inputs, output):
        ctx.reduction, ctx.engine = inputs[8], inputs[9]
        # backward answers list arguments with lists (torch.library: an empty list is a list of tensors)
        ctx.no_grads = (None,) * 5 + ([] if not inputs[6] else None, [None] * len(inputs[7])) + (None,) * 3
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # else autograd builds an N x C zero "gradient" for output[1]
        ctx.save_for_backward(output[1])
        _keep_for_double_backward(ctx, inputs)

    def backward(ctx, grad_output, _):
        (grad,) = ctx.saved_tensors
        if grad_output is None:  # grads are not materialized: nothing flowed into the loss
            return (None,) + ctx.no_grads
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient autograd can differentiate
            return (_double_backward(ctx, kernel, _differentiable_loss, grad_output),) + ctx.no_grads
        return (_scaled_grad(ctx, kernel, scale_op, grad, grad_output),) + ctx.no_grads

    op.register_autograd(weak(backward), setup_context=weak(setup_context))
    return _Op(op, impl, setup_context, backward), scale_op


def _keep_for_double_backward(ctx, inputs):
    """What a backward with create_graph=True recomputes the loss from: the op's inputs (eager calls; the
    input is referenced, not copied, and must not change in place before such a backward)."""
    ctx.inputs = inputs if getattr(ctx, "eager", False) and _SHARD is None else None
    ctx.version = inputs[0]._version


def _double_backward(ctx, kernel, loss, grad_output):
    """The gradient as differentiable torch ops (so that autograd can take a second derivative): the loss
    computed again by the reference backend's program, differentiated under autograd."""
    if ctx.inputs is None:
        raise LossParamError(f"{kernel.name}: double backward (create_graph=True) is supported in eager calls "
                             "of the torch and triton engines, not through the custom op (torch.compile, "
                             "functorch transforms, dispatch modes) nor with a class_group; use "
                             "backend='reference' there")
    x = ctx.inputs[0]
    if x._version != ctx.version:
        raise RuntimeError(f"{kernel.name}: the input was modified in place after the loss was computed; a "
                           "double backward (create_graph=True) needs its values")
    with torch.enable_grad():
        out = loss(kernel, *ctx.inputs)
        (grad,) = torch.autograd.grad(out, x, grad_output, create_graph=True)
    return grad


def _differentiable_loss(kernel, x, t, valid, w, den, mul, params, classes, reduction, engine, need_grad):
    """The fused op's loss from its inputs, as the reference backend computes it (differentiable)."""
    dtype = _compute_dtype(x.dtype)
    rows = x.movedim(1, -1).reshape(-1, x.shape[1]) if x.dim() == 3 else x  # ([N, C, S]: row n*S + s)
    if engine == "triton":  # the kernels take the targets as given: convert them as the torch engine does
        if kernel.target == "distribution":
            t = t.movedim(1, -1).reshape(-1, x.shape[1]).to(dtype)
        elif kernel.rows:
            t = t.long() if valid is None else torch.where(valid, t.long(), 0)
        else:
            t = t.to(dtype) if valid is None else torch.where(valid, t.to(dtype), 0.0)
    values = _Values(kernel.layout, params, classes)
    z = rows.to(dtype)
    losses = _as_rows(kernel.functions(values)[0](z, t, values), z.shape[0], z)
    if valid is not None:
        losses = torch.where(valid, losses, 0.0)
    scale = _scale_of(w, den, mul, dtype)
    weighted = losses if scale is None else losses * scale
    return (weighted if reduction == "none" else weighted.sum()).to(x.dtype)


def _differentiable_batch_loss(kernel, x, t, w, sums, params, engine, from_logits, need_grad):
    """The batch op's loss from its inputs (differentiable): this call's sums computed again, the rest of
    the given sums (other ranks', all-reduced) as constants."""
    dtype = _compute_dtype(x.dtype)
    values = _Values(kernel.layout, params, [])
    u = torch.sigmoid(x.to(dtype)) if from_logits else x.to(dtype)
    terms = [torch.as_tensor(g, dtype=dtype, device=x.device).expand(u.shape[0]) for g in kernel.terms(u, t, values)]
    count = torch.as_tensor(float(u.shape[0]), dtype=dtype, device=x.device) if w is None else w.to(dtype).sum()
    local = torch.stack([g.sum() if w is None else (g * w.to(dtype)).sum() for g in terms] + [count])
    total = local + (sums.to(dtype) - local.detach())
    value = kernel.value([total[k] for k in range(kernel.count)], total[kernel.count], values)
    return torch.as_tensor(value, dtype=dtype, device=x.device).to(x.dtype)


def _engine(kernel, backend, input):
    """The engine a backend runs on for this input: "reference", "torch" or "triton"."""
    if backend == "reference":
        return "reference"
    if _SHARD is not None:  # (apply_loss refuses triton with a class group)
        return "torch" if kernel.loss_and_grad is not None else "reference"
    can_triton = kernel.triton is not None and input.dtype in (torch.float32, torch.bfloat16, torch.float16)
    if backend == "triton":
        if kernel.triton is None:
            raise LossParamError(f"{kernel.name}: the triton backend is not available in this module (it needs "
                                 "triton installed and a module compiled with --target triton or all)")
        if not can_triton:
            raise LossInputError(f"{kernel.name}: the triton backend computes in float32 and takes float32, "
                                 f"bfloat16 or float16 inputs, got {input.dtype}; use backend='torch'")
        if input.device.type == "cpu" and not _interpreting_triton():
            raise LossInputError(f"{kernel.name}: the triton backend runs on GPU tensors (or on CPU tensors "
                                 "with TRITON_INTERPRET=1 set before triton is imported)")
        return "triton"
    if backend == "torch" or kernel.triton is None:
        if kernel.loss_and_grad is None:
            if backend == "torch":
                raise LossParamError(f"{kernel.name}: the torch backend is not in this module (compiled for "
                                     "triton alone)")
            return "reference"
        return "torch"
    if can_triton and (input.device.type == "cuda" or kernel.loss_and_grad is None and
                                        _interpreting_triton()):
        return "triton"
    return "torch" if kernel.loss_and_grad is not None else "reference"


def _interpreting_triton():
    import os  # (a local import: the runtime's globals are names a spec may not use)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def apply_loss(kernel, params, input, target, *, weight=None, ignore_index=None, reduction="mean",
               sample_weight=None, backend="auto", validate=True, class_group=None, inplace_grad=False):
    """Run a generated loss with nn.CrossEntropyLoss's weight / ignore_index / reduction semantics
    (``ignore_index`` None: nothing is ignored; the modules default it to -100 for row losses). With
    ``class_group`` (a torch.distributed process group; row losses) the input holds this rank's contiguous
    block of the classes (ranks in group order hold consecutive blocks), the targets are global class
    indices (or this rank's block of the probabilities), ``weight`` and per-class parameters are the whole
    C-vectors; every rank gets the whole rows' loss and the gradient of its own block. With
    ``inplace_grad`` the forward writes the gradient over the input (see _InplaceGrad)."""
    global _SHARD
    input = _autocast_input(input)
    if class_group is None:
        return _apply_loss(kernel, params, input, target, weight, ignore_index, reduction, sample_weight,
                           backend, validate, inplace_grad)
    call = (params, weight is not None, reduction, ignore_index, bool(validate), bool(inplace_grad))
    shard = _class_shard(kernel, class_group, input, backend, call)
    previous, _SHARD = _SHARD, shard
    try:
        return _agreed(shard.agreement, _apply_loss, kernel, params, input, target, weight, ignore_index,
                       reduction, sample_weight, backend, validate, inplace_grad)
    finally:
        _SHARD = previous


def _autocast_input(input):
    """Under torch.autocast on the CPU, as torch.nn.functional's losses there: a half-precision input is
    cast to float32, so the loss is float32 (the gradient still comes back in the input's dtype). On a GPU
    the engines read half precision as it is (they compute in float32) and return the input's dtype."""
    if isinstance(input, torch.Tensor) and input.dtype in (torch.bfloat16, torch.float16) \
            and input.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return input.float()
    return input


def _class_shard(kernel, group, input, backend, call):
    """The class group of a call: this rank's first class and C, from one all-reduce (MAX) of the ranks'
    widths, which is also the agreement (see _Agreement) on the checks that need no C and on the call's
    signature: the same rows, dtype, layout, engine, gradient, class weights given or not, validate and
    options on every rank. The checks that need C (targets, class weights) are agreed on before the first
    row reduction, by the shard's agreement."""
    import torch.distributed as dist  # (a local import: the runtime's globals are names a spec may not use)
    if not kernel.rows:
        raise LossParamError(f"{kernel.name}: class_group splits the classes of a row loss (multiclass, "
                             "distribution); this loss has none")
    if _compiling():
        raise LossParamError(f"{kernel.name}: class_group is not supported under torch.compile")
    sizes = _Agreement(kernel.name, group, "class_group", input, _ROW_FIELDS, dist.get_world_size(group))
    values = error = None
    try:
        if backend == "triton":
            raise LossParamError(f"{kernel.name}: the triton backend does not take a class_group; use "
                                 "backend='torch'")
        if not isinstance(input, torch.Tensor) or not input.is_floating_point() or input.dim() < 2:
            raise LossInputError(f"{kernel.name}: input must be a floating-point tensor [N, C] or [N, C, d1, ...] "
                                 "(C: this rank's classes)")
        params, weighted, reduction, ignore_index, validate, inplace_grad = call
        engine = "reference" if backend == "reference" or kernel.loss_and_grad is None else "torch"
        need_grad = torch.is_grad_enabled() and input.requires_grad
        rows = input.shape[0] * math.prod(input.shape[2:])
        values = (rows, _dtype_code(input.dtype), input.dim(), _ENGINES.index(engine), need_grad, weighted,
                  validate, _options_hash(kernel.name, kernel.spec_hash, _flat(kernel, params), reduction,
                                          ignore_index, tuple(input.shape[2:]), kernel.chunk, inplace_grad))
    except Exception as failure:  # noqa: BLE001 - agreed on by every rank, raised on every rank
        error = failure
    widths = [0] * sizes.world
    if error is None:
        widths[sizes.rank] = input.shape[1]
    widths = sizes.agree(values, widths, error)
    if min(widths) < 1:
        raise LossInputError(f"{kernel.name}: rank {widths.index(min(widths))} of the class_group holds no class "
                             f"(the ranks' widths are {widths}); every rank must hold at least one class")
    return _Shard(group, sum(widths[:sizes.rank]), sum(widths),
                  _Agreement(kernel.name, group, "class_group", input))


def _apply_loss(kernel, params, input, target, weight, ignore_index, reduction, sample_weight, backend, validate,
                inplace_grad=False):
    if reduction not in REDUCTIONS:
        raise LossParamError(f"{kernel.name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if backend not in BACKENDS:
        raise LossParamError(f"{kernel.name}: backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(input, torch.Tensor) and input.is_floating_point():
        engine = _engine(kernel, backend, input)
    else:
        engine = "reference"  # _targets says what is wrong with the input
    validate = validate and not _compiling()
    if inplace_grad and engine == "reference" and torch.is_grad_enabled() and input.requires_grad:
        raise LossParamError(f"{kernel.name}: inplace_grad needs the torch or triton engine (the reference "
                             "backend differentiates the input under autograd)")
    t, valid, shape = _targets(kernel, input, target, ignore_index, validate, convert=engine != "triton")
    dtype = _compute_dtype(input.dtype)
    if valid is not None and input.device.type == "cpu" and _eager(valid) and bool(valid.all()):
        valid = None  # (a device sync on a GPU: there the kernels take the mask as it is)
    if kernel.rows and isinstance(weight, torch.Tensor) and tuple(weight.shape) != (_num_classes(input),):
        whole = " (all ranks' classes: give the whole vector on every rank)" if _SHARD is not None else ""
        raise LossInputError(f"{kernel.name}: weight has {weight.numel()} values (shape {list(weight.shape)}), "
                             f"but the input has C = {_num_classes(input)} classes{whole}")
    w, den, mul = _scaling(kernel, t, valid, weight, sample_weight, shape, reduction, dtype)
    if engine == "reference":
        x = _rows(kernel, input).to(dtype)
        values = _Values(kernel.layout, _flat(kernel, params), _class_tensors(kernel, params, weight, input))
        losses = _as_rows(_shared_loss(kernel.functions(values)[0](x, t, values)), t.shape[0], x)
        if valid is not None:
            losses = torch.where(valid, losses, 0.0)
        scale = _scale_of(w, den, mul, dtype)
        weighted = losses if scale is None else losses * scale
        out = weighted if reduction == "none" else weighted.sum()
        out = _connected(out.to(input.dtype), input)
    else:
        if engine == "triton":
            x = input.reshape(input.shape[0], input.shape[1], math.prod(input.shape[2:])) \
                if kernel.rows else input.reshape(-1)
            if w is not None:
                w = w.to(torch.float32).contiguous()
            if den is not None:
                den = den.to(torch.float32)
            t = t.contiguous() if t.dim() == 1 else t  # (soft targets [N, C, S]: the kernels take strides)
        elif kernel.rows and input.dim() > 2:  # [N, C, S]: the engine moves rows chunk by chunk
            x = input.reshape(input.shape[0], input.shape[1], math.prod(input.shape[2:]))
        else:
            x = _rows(kernel, input)
        need_grad = torch.is_grad_enabled() and input.requires_grad
        classes = _class_tensors(kernel, params, weight, input, engine)
        if inplace_grad and need_grad:
            _check_inplace(kernel, input)
            run = (kernel, x, t, valid, w, den, mul, _Values(kernel.layout, _flat(kernel, params), classes),
                   reduction, engine)
            out = _InplaceGrad.apply(input, run)
        else:
            out, _ = kernel.op(x, t, valid, w, den, mul, _flat(kernel, params), classes, reduction, engine,
                               need_grad)
    if reduction == "mean":
        out = _mean_of_nothing(out, shape)
    return out.reshape(shape) if reduction == "none" else out


def _mean_of_nothing(out, shape):
    """The mean over no element is 0 / 0 = NaN, as F.cross_entropy's and F.binary_cross_entropy_with_logits's;
    its gradient stays that of the sum (empty). (Every element ignored, or weighted 0: the divisor
    is 0 and the engines' mean NaN already.)"""
    return out + math.nan if not math.prod(shape) else out


def _check_inplace(kernel, input):
    if _compiling():
        raise LossParamError(f"{kernel.name}: inplace_grad is not supported under torch.compile")
    if input.is_leaf or input._base is not None and input._base.is_leaf:
        raise LossInputError(f"{kernel.name}: inplace_grad writes the gradient over the input, so the input "
                             "must be computed by the model (not a leaf tensor that requires grad, such as "
                             "a Parameter, nor a view of one)")


class _InplaceGrad(torch.autograd.Function):
    """The fused loss with its gradient written over the input in the forward (``inplace_grad=True``),
    saving the gradient buffer where the engine works on the input's own memory (the torch engine on
    [N, C] rows and on elementwise inputs, the triton kernels on any contiguous input; else the gradient
    is computed apart and copied over the input). The input's values are gone after the forward: any
    autograd node that saved them raises at its backward (the version counter is bumped), and any other
    later use of them reads the gradient. The backward scales that buffer by grad_output in place and
    returns it; a second backward (retain_graph=True) is refused by autograd."""

    @staticmethod
    def forward(ctx, input, run):
        kernel, x, t, valid, w, den, mul, values, reduction, engine = run
        own = x.data_ptr() == input.data_ptr() and input.is_contiguous() and x.is_contiguous()
        into = x if own else None
        if engine == "triton":
            out, grad = kernel.triton.forward(x, t, valid, w, den, mul, values, reduction, True, into=into)
        else:
            out, grad = _torch_engine(kernel, x, t, valid, w, den, mul, values, reduction, True, into=into)
        if not own:  # the engine worked on a copy of a strided input: copy the gradient over it
            input.copy_(grad.reshape(input.shape))
            del grad
        torch.autograd.graph.increment_version(input)  # (the kernels write through pointers)
        ctx.reduction, ctx.row = reduction, kernel.rows
        ctx.triton = kernel.triton if engine == "triton" and input.is_contiguous() else None
        ctx.save_for_backward(input)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            go = grad_output.reshape(grad.shape[:1] + grad.shape[2:]).unsqueeze(1) if ctx.row else \
                grad_output.reshape(grad.shape)
            grad.mul_(go)
        elif ctx.triton is not None:  # reads and writes nothing where grad_output is 1, with no host sync
            ctx.triton.scale_(grad, grad_output)
            torch.autograd.graph.increment_version(grad)  # (a second backward is refused, as after mul_)
        elif _compiling() or grad_output.device.type != "cpu" or float(grad_output) != 1.0:
            grad.mul_(grad_output)
        return grad, None


# ---------------------------------------------------------------------------------------------
# The batch form: L = M(B_1 … B_k, N), B_k = sum_i w_i g_k(s_i, y_i), N = sum_i w_i. Two passes: the sums
# (then all-reduced over a process group, if any), then each element's gradient sum_k M_{B_k} g_k'.


class BatchKernel:
    """The generated functions of one batch loss: ``terms(u, t, P)`` (the per-element terms g_k, a
    list), ``value(B, N, P)`` (M from the sums), ``grad(u, t, P, B, N, out, c)`` (the gradient of each
    element times c, into out) and ``triton`` (its kernels' launcher, or None). ``sums_op`` and ``op`` are
    the two passes as ``torch.library`` custom ops (see ``_register_batch``)."""

    form, rows = "batch", False

    def __init__(self, name, spec_hash, target, layout, terms, value, grad, count, triton=None):
        self.name, self.spec_hash, self.target, self.layout = name, spec_hash, target, layout
        self.terms, self.value, self.grad, self.count, self.triton = terms, value, grad, count, triton
        self.loss_and_grad = grad
        self.sums_op, self.op = _register_batch(self)


def _batch_sums_torch(kernel, x, t, w, values, from_logits):
    """[B_1 … B_k, N] in the compute dtype, chunk by chunk, with the generated terms."""
    dtype = _compute_dtype(x.dtype)
    sums = torch.zeros(kernel.count + 1, dtype=dtype, device=x.device)
    for start in range(0, x.shape[0], CHUNK_ELEMENTS):
        end = min(start + CHUNK_ELEMENTS, x.shape[0])
        u, tc = x[start:end].to(dtype), t[start:end]
        if from_logits:
            u = torch.sigmoid(u)
        wc = None if w is None else w[start:end]
        for k, g in enumerate(kernel.terms(u, tc, values)):
            g = torch.as_tensor(g, dtype=dtype, device=x.device).expand(end - start)
            sums[k] += g.sum() if wc is None else torch.dot(g, wc)
        sums[kernel.count] += (end - start) if wc is None else wc.sum()
    return sums


def _batch_grad_torch(kernel, x, t, w, sums, values, from_logits):
    """The gradient of every element (x's shape and dtype), weighted by w."""
    dtype = _compute_dtype(x.dtype)
    B = [sums[k] for k in range(kernel.count)]
    N = sums[kernel.count]
    grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], CHUNK_ELEMENTS):
        end = min(start + CHUNK_ELEMENTS, x.shape[0])
        xc, tc = x[start:end].to(dtype), t[start:end]
        u = torch.sigmoid(xc) if from_logits else xc
        c = None if w is None else w[start:end]
        out = torch.empty(end - start, dtype=dtype, device=x.device)
        g = kernel.grad(u, tc, values, B, N, out, c)
        if from_logits:  # ds/dx = sigmoid(x) sigmoid(-x)
            g = g * (u * torch.sigmoid(-xc))
        if w is not None:  # exact zeros for dropped elements, even where the gradient is not finite
            g = torch.where(c != 0, g, 0.0)
        grad[start:end] = g
    return grad


def _register_batch(kernel):
    """The two passes of a batch loss as ``torch.library`` custom ops: ``sums_op(x, t, w, params, engine,
    from_logits) -> [B_1 … B_k, N]`` (no gradient: the second op carries it) and ``op(x, t, w, sums,
    params, engine, from_logits, need_grad) -> (loss, grad)``, whose backward scales the saved gradient
    by grad_output. Between the two, the caller may all-reduce the sums."""
    base = f"{kernel.name}_{kernel.spec_hash}"
    index = 0
    while hasattr(torch.ops.lossc, f"{base}_{index}_sums"):
        index += 1
    name = f"lossc::{base}_{index}"
    weak = _released_with(kernel, (name + "_sums", name + "_loss", name + "_scale"))

    def sums_impl(x: torch.Tensor, t: torch.Tensor, w: _Optional[torch.Tensor], params: _List[float], engine: str,
                  from_logits: bool) -> torch.Tensor:
        values = _Values(kernel.layout, params, [])
        if engine == "triton":
            return kernel.triton.batch_sums(x, t, w, values, from_logits)
        return _batch_sums_torch(kernel, x, t, w, values, from_logits)

    sums_op = torch.library.custom_op(name + "_sums", weak(sums_impl), mutates_args=())

    def sums_fake(x, t, w, params, engine, from_logits):
        return x.new_empty((kernel.count + 1,), dtype=_compute_dtype(x.dtype))

    sums_op.register_fake(weak(sums_fake))

    def impl(x: torch.Tensor, t: torch.Tensor, w: _Optional[torch.Tensor], sums: torch.Tensor, params: _List[float],
             engine: str, from_logits: bool, need_grad: bool) -> _Tuple[torch.Tensor, torch.Tensor]:
        values = _Values(kernel.layout, params, [])
        loss = None
        if need_grad and engine == "triton":  # (its program 0 computes the loss too)
            loss, grad = kernel.triton.batch_grad(x, t, w, sums, values, from_logits)
        elif need_grad:
            grad = _batch_grad_torch(kernel, x, t, w, sums, values, from_logits)
        else:
            grad = x.new_empty(0)
        if loss is None:
            loss = torch.as_tensor(kernel.value([sums[k] for k in range(kernel.count)], sums[kernel.count], values),
                                   dtype=sums.dtype, device=x.device)
        return loss.reshape(()).to(x.dtype), grad

    op = torch.library.custom_op(name + "_loss", weak(impl), mutates_args=())

    def fake(x, t, w, sums, params, engine, from_logits, need_grad):
        return x.new_empty(()), (x.new_empty(x.shape) if need_grad else x.new_empty(0))

    op.register_fake(weak(fake))
    scale_op = _register_scale(kernel, name, weak)

    def setup_context(ctx, inputs, output):
        ctx.engine, ctx.reduction = inputs[5], "sum"  # (a batch loss is one number: a scalar grad_output)
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])
        _keep_for_double_backward(ctx, inputs)

    def backward(ctx, grad_output, _):
        (grad,) = ctx.saved_tensors
        if grad_output is None:
            return (None,) * 8
        if torch.is_grad_enabled():  # backward(create_graph=True)
            return (_double_backward(ctx, kernel, _differentiable_batch_loss, grad_output),) + (None,) * 7
        return (_scaled_grad(ctx, kernel, scale_op, grad, grad_output),) + (None,) * 7

    op.register_autograd(weak(backward), setup_context=weak(setup_context))
    return _Op(sums_op, sums_impl), _Op(op, impl, setup_context, backward)


def _all_reduce_sums(sums, agreement, signature):
    """The sums of every rank of the process group, in place (torch.distributed, SUM), once its ranks agreed
    on the validity of their inputs and on the call's signature (see _Agreement)."""
    import torch.distributed as dist  # (a local import: the runtime's globals are names a spec may not use)
    agreement.agree(signature)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=agreement.group)
    return sums


def apply_batch_loss(kernel, params, input, target, *, weight=None, ignore_index=None, reduction="mean",
                     sample_weight=None, backend="auto", validate=True, from_logits=False, batch_group=None):
    """Run a generated batch loss: one scalar for the whole batch (``reduction`` "mean" and "sum" both
    give it; "none" has no meaning). ``weight`` (broadcast to the input) and ``sample_weight`` weight each
    element's terms and its count in N; elements whose target is ``ignore_index`` are dropped. With
    ``batch_group`` (a torch.distributed process group) the sums are all-reduced over it first, after the
    ranks' agreement on their inputs' validity (with ``validate``, see _Agreement)."""
    args = (kernel, params, input, target, weight, ignore_index, reduction, sample_weight, backend, validate,
            from_logits)
    if batch_group is None:
        return _apply_batch_loss(*args, None)
    agreement = _Agreement(kernel.name, batch_group, "batch_group", input, _BATCH_FIELDS,
                           active=validate and not _compiling())
    return _agreed(agreement, _apply_batch_loss, *args, agreement)


def _apply_batch_loss(kernel, params, input, target, weight, ignore_index, reduction, sample_weight, backend,
                      validate, from_logits, group):
    if reduction not in ("mean", "sum"):
        raise LossParamError(f"{kernel.name}: a batch loss is one number for the whole batch: reduction "
                             f"must be 'mean' or 'sum' (both give it), got {reduction!r}")
    if backend not in BACKENDS:
        raise LossParamError(f"{kernel.name}: backend must be one of {BACKENDS}, got {backend!r}")
    input = _autocast_input(input)
    if isinstance(input, torch.Tensor) and input.is_floating_point() and input.dim() == 0:
        raise LossInputError(f"{kernel.name}: input must hold a batch of predictions, got a 0-d tensor")
    engine = _engine(kernel, backend, input) if isinstance(input, torch.Tensor) and input.is_floating_point() \
        else "reference"
    validate = validate and not _compiling()
    t, valid, shape = _targets(kernel, input, target, ignore_index, validate)
    if input.numel() == 0 and group is None:  # (a rank of a batch_group may hold no element)
        raise LossInputError(f"{kernel.name}: the batch is empty (input shape {list(input.shape)}); a batch loss "
                             "is a function of the batch's sums and has no value without an element")
    if validate and not from_logits and input.numel():
        bad = (input < 0) | (input > 1) | torch.isnan(input)
        if valid is not None:
            bad = bad & valid.reshape(input.shape)
        if bool(bad.any()):
            raise LossInputError(f"{kernel.name}: input holds {float(input[bad][0])}, not a probability in "
                                 "[0, 1]; pass from_logits=True for logits")
    dtype = _compute_dtype(input.dtype)
    w, _, _ = _scaling(kernel, t, valid, weight, sample_weight, shape, "sum", dtype)
    if valid is not None:
        w = valid.to(dtype) if w is None else torch.where(valid, w, 0.0)
    x = input.reshape(-1)
    signature = None if group is None else (_dtype_code(input.dtype), _ENGINES.index(engine), _options_hash(
        kernel.name, kernel.spec_hash, _flat(kernel, params), ignore_index, bool(from_logits)))
    if engine == "reference":
        u = x.to(dtype)
        if from_logits:
            u = torch.sigmoid(u)
        terms = [torch.as_tensor(g, dtype=dtype, device=x.device).expand(u.shape[0])
                 for g in kernel.terms(u, t, params)]
        local = torch.stack([g.sum() if w is None else (g * w).sum() for g in terms]
                            + [torch.as_tensor(float(u.shape[0]), dtype=dtype, device=x.device)
                               if w is None else w.sum()])
        sums = local
        if group is not None:  # the other ranks' sums enter as constants: each rank's gradient is its own part
            other = _all_reduce_sums(local.detach().clone(), group, signature) - local.detach()
            sums = local + other
        return _connected(torch.as_tensor(kernel.value([sums[k] for k in range(kernel.count)], sums[kernel.count],
                                                       params), dtype=dtype, device=x.device).to(input.dtype), input)
    if engine == "triton":
        x, t = x.contiguous(), t.contiguous()
        if w is not None:
            w = w.to(torch.float32).contiguous()
    flat = _flat(kernel, params)
    sums = kernel.sums_op(x.detach(), t, w, flat, engine, bool(from_logits))
    if group is not None:
        sums = _all_reduce_sums(sums.clone(), group, signature)
    need_grad = torch.is_grad_enabled() and input.requires_grad
    out, _ = kernel.op(x, t, w, sums, flat, engine, bool(from_logits), need_grad)
    return out


# ---------------------------------------------------------------------------------------------
# The composite form (tasks): k scalar task losses and learnable parameters, under autograd.


def apply_tasks_loss(name, count, loss, learned, params, losses):
    """``loss(L, S, P)`` of the task losses given as ``count`` arguments, or as one sequence or 1-d tensor."""
    if len(losses) == 1 and isinstance(losses[0], (list, tuple)):
        losses = tuple(losses[0])
    elif len(losses) == 1 and isinstance(losses[0], torch.Tensor) and losses[0].dim() == 1 and count > 1:
        losses = tuple(losses[0].unbind(0))
    if len(losses) != count:
        raise LossInputError(f"{name}: takes {count} task losses, got {len(losses)}")
    values = []
    for i, value in enumerate(losses):
        value = torch.as_tensor(value) if not isinstance(value, torch.Tensor) else value
        if value.numel() != 1 or not value.is_floating_point():
            raise LossInputError(f"{name}: task loss {i + 1} must be a floating-point scalar, got shape "
                                 f"{list(value.shape)} and dtype {value.dtype}")
        values.append(value.reshape(()))

    class _Learned:  # the learnables by name, in the task losses' dtype
        pass
    S = _Learned()
    dtype = torch.float32
    for value in values:
        dtype = torch.promote_types(dtype, value.dtype)
    for key, parameter in learned.items():
        setattr(S, key, parameter.to(dtype=dtype, device=values[0].device)
                if parameter.dim() else parameter.to(dtype=dtype, device=values[0].device))
    return loss([v.to(dtype) for v in values], S, params)


# ---------------------------------------------------------------------------------------------
# Pickling: a module built by lossc.loss is saved as what builds it again (see lossc.api._rebuild).

_OPTIONS = ("ignore_index", "reduction", "backend", "validate", "class_group", "inplace_grad", "from_logits",
            "batch_group")


def reduce_module(module, protocol):
    """``__reduce_ex__`` of a generated nn.Module: a module built by ``lossc.loss`` (its class lives in a
    module made from text, which another process cannot import) pickles as its recipe (source text,
    parameters), its options as they are now and its state_dict; None for any other (a module imported from
    its generated file pickles by reference, as usual)."""
    recipe = module.__dict__.get("_lossc_recipe")
    if recipe is None:
        return None
    rebuild, spec = recipe
    options = {key: module.__dict__[key] for key in _OPTIONS if key in module.__dict__}
    if "weight" in module._buffers:
        options["weight"] = module._buffers["weight"]
    return rebuild, (spec, options, module.state_dict(), module.training)


# -- the parameter checks of generated modules' _params


def _constant_tensor(name, value):
    """A tensor given for a parameter: refused where it requires grad (parameters are constants of the
    compiled loss; the gradient would silently stop at them)."""
    if isinstance(value, torch.Tensor) and value.requires_grad:
        raise LossParamError(f"{name} is a tensor that requires grad, but lossc parameters are constants: "
                             "no gradient flows to them. Pass a number or a detached tensor (for a learnable "
                             "weighting, write a tasks loss with learnable parameters)")
    return value


def _number(name, value):
    if isinstance(value, torch.Tensor) and _constant_tensor(name, value).numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LossParamError(f"{name} must be a number, got {value!r}")
    return float(value)


def _class_vector(name, value):
    if value is None:
        raise LossParamError(f"{name} is a per-class parameter: give one value per class (a 1-d tensor or list)")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(name, value)  # the same for every class
    for entry in value if isinstance(value, (list, tuple)) else (value,):
        _constant_tensor(name, entry)
    try:
        value = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise LossParamError(f"{name} must be a 1-d tensor or list of numbers, got {type(value).__name__}") from None
    if value.dim() != 1 or not value.numel():
        raise LossParamError(f"{name} must be a 1-d tensor with one value per class, got shape {list(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise LossParamError(f"{name} must be finite")
    return value


def _vector(name, value, size):
    if isinstance(value, torch.Tensor):
        value = _constant_tensor(name, value).tolist()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * size
    values = tuple(_number(name, v) for v in value)
    if len(values) != size:
        raise LossParamError(f"{name} needs {size} values, got {len(values)}")
    return values


def require_runtime(version, module):
    """The runtime's version; an ImportError for a generated module made for another one."""
    if version != RUNTIME_VERSION:
        raise ImportError(f"{module} was generated for lossc's runtime version {version}, but the installed "
                          f"lossc has version {RUNTIME_VERSION}: compile it again (lossc compile), or compile "
                          "it with --standalone to carry its own runtime")
    return RUNTIME_VERSION
