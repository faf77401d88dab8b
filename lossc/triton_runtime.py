# lossc triton runtime: copied verbatim into generated modules compiled with the triton kernels
# (targets "triton" and "all"), after lossc/runtime.py. It holds no math of any loss: the helpers
# below are the atoms core triton.language lacks, built from core ops only (every function of
# triton.language.extra.libdevice raises under TRITON_INTERPRET=1, and one code path serves the
# GPU and the CPU interpreter CI tests with), and the launcher picks each kernel's regime.
import contextlib
import functools

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the module still works: the torch engine and the reference backend
    triton = tl = None

_TILE_CLASSES = 8192     # rows with at most this many classes are held in registers; longer rows are chunked
_CHUNK = 4096            # classes per chunk of a long row
_TILE_ELEMENTS = 2048    # logits per program in the tile regime: several rows per program when C is small
_MAX_ROWS = 128          # rows per program at most
_BLOCK = 1024            # elements per program of the elementwise kernel (4 per thread: 8 warps)
_SCALE_BLOCK = 4096      # elements per program of the backward's in-place scaling


def _next_power_of_2(n):
    return 1 << max(0, int(n) - 1).bit_length()


def _warps(rows, classes):
    # values of a tile per thread that ptxas (sm_90) fits in about 64 registers, for full occupancy and
    # no spills: 16 when a program holds 1 or 2 rows, fewer with more rows (each thread then also
    # holds the row scalars of the rows it touches)
    per_thread = 16 if rows <= 2 else 8 if rows <= 4 else 4
    return max(1, min(16, rows * classes // (32 * per_thread)))


def _alignment(x, C, S):
    """The largest power of 2 (up to 16) dividing C and the rows' strides when classes are contiguous
    (triton itself only knows whether an integer argument is a multiple of 16): with it, rows of
    C = 1000 fp32 logits load as 16-byte vectors."""
    if S != 1 or x.stride(1) != 1:
        return 1
    align = 16
    while align > 1 and (C % align or x.stride(0) % align):
        align //= 2
    return align


def _interpreted(fn):
    return type(fn).__name__ == "InterpretedFunction"


def launch(fn, grid, args, meta, num_warps, exact_ties):
    """Launch a kernel. Under the interpreter, kernels compute values in lanes that where() or a mask then drops
    (log 0, 0/0), as on a GPU: numpy's warnings about them say nothing. ``exact_ties``: a max reduction's argmax
    is found again by ==, so the same expression must round the same way in every sweep: no contraction to fma."""
    if _interpreted(fn):
        import numpy
        with numpy.errstate(all="ignore"):
            fn[grid](*args, **meta)
    else:
        fn[grid](*args, **meta, num_warps=num_warps, enable_fp_fusion=not exact_ties)


if triton is not None:

    @triton.jit
    def _tl_log1p(x):
        # log(1 + x): 2 atanh(s), s = x / (2 + x), as its series where |x| < 1/4 (no cancellation,
        # and no reliance on log being accurate near 1); log(1 + x) beyond.
        small = tl.abs(x) < 0.25
        xs = tl.where(small, x, 0.0)
        s = xs / (2.0 + xs)
        s2 = s * s
        series = 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0)))))
        return tl.where(small, series, tl.log(1.0 + x))

    @triton.jit
    def _tl_expm1(x):
        # exp(x) - 1: its Taylor series (Horner, 9 terms) where |x| < 1/2, exp(x) - 1 beyond.
        small = tl.abs(x) < 0.5
        xs = tl.where(small, x, 0.0)
        series = 1.0 + xs * (1.0 / 9.0)
        series = 1.0 + xs * (1.0 / 8.0) * series
        series = 1.0 + xs * (1.0 / 7.0) * series
        series = 1.0 + xs * (1.0 / 6.0) * series
        series = 1.0 + xs * (1.0 / 5.0) * series
        series = 1.0 + xs * (1.0 / 4.0) * series
        series = 1.0 + xs * (1.0 / 3.0) * series
        series = 1.0 + xs * 0.5 * series
        return tl.where(small, xs * series, tl.exp(x) - 1.0)

    @triton.jit
    def _tl_tanh(x):
        # tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): accurate near 0, exactly 1 far out
        e = _tl_expm1(-2.0 * tl.abs(x))
        r = -e / (2.0 + e)
        return tl.where(x < 0.0, -r, r)

    @triton.jit
    def _tl_softplus(x):
        # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), never overflowing
        return tl.where(x > 0.0, x, 0.0) + _tl_log1p(tl.exp(-tl.abs(x)))

    @triton.jit
    def _tl_log_softplus(x):
        # log(softplus(x)): x + log1p(-e^x / 2) below -20, where softplus(x) = e^x underflows; log(softplus) above
        small = x < -20.0
        return tl.where(small, x + _tl_log1p(-0.5 * tl.exp(tl.where(small, x, -20.0))),
                        tl.log(_tl_softplus(tl.where(small, 0.0, x))))

    @triton.jit
    def _tl_pow(x, a):
        # x^a = exp2(a log2|x|), with torch.pow's values at a = 0, x = 1 and for negative bases
        # (finite for integer a, NaN otherwise; -inf as C's pow: inf or 0)
        r = tl.exp2(a * tl.log2(tl.abs(x)))
        r = tl.where((a == 0.0) | (x == 1.0), 1.0, r)
        whole = tl.floor(a) == a
        odd = whole & (tl.floor(a * 0.5) * 2.0 != a)
        negative = tl.where(whole, tl.where(odd, -r, r), tl.where(x == float("-inf"), r, float("nan")))
        return tl.where(x < 0.0, negative, r)

    @triton.jit
    def _tl_powk(x, a):
        # x^a for an exponent known only at run time, one value for the whole launch (a parameter such as
        # focal's gamma): products where it is 0, 1, 2 or 3 (gamma = 2 and its derivatives' gamma - 1,
        # gamma - 2: no transcendental per element, and exact), _tl_pow otherwise; the branch is uniform
        if a == 2.0:
            r = x * x
        elif a == 1.0:
            r = x
        elif a == 0.0:
            r = tl.zeros_like(x) + 1.0
        elif a == 3.0:
            r = x * x * x
        else:
            r = _tl_pow(x, a)
        return r

    @triton.jit
    def _tl_atan(x):
        # arctan: reduced to [0, tan(pi/8)] (pi/2 - atan(1/a), pi/4 + atan((a - 1)/(a + 1))), then the odd
        # polynomial of Cephes' atanf (within 2 float32 ulps); odd
        a = tl.abs(x)
        big = a > 2.414213562373095
        mid = a > 0.41421356237309503
        base = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
        t = tl.where(big, -1.0 / a, tl.where(mid, (a - 1.0) / (a + 1.0), a))
        z = t * t
        r = base + ((((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z
                     - 3.33329491539e-1) * z * t + t)
        return tl.where(x < 0, -r, r)

    @triton.jit
    def _tl_acos(x):
        # arccos(x) = 2 atan(sqrt((1 - x) / (1 + x))): no 1 - x^2 near +-1 (pi at x = -1; NaN past +-1)
        return 2.0 * _tl_atan(tl.sqrt((1.0 - x) / (1.0 + x)))

    @triton.jit
    def _tl_sinh(x):
        # sinh: (e + e / (e + 1)) / 2 with e = expm1(x) near 0 (no cancellation), e^|x| / 2 halves beyond
        # (no overflow of e^|x| before sinh itself overflows)
        a = tl.abs(x)
        e = _tl_expm1(a)
        h = tl.exp(0.5 * a)  # (e^|x| / 2 as h * h / 2: no rounding of a shifted argument)
        r = tl.where(a < 1.0, 0.5 * (e + e / (e + 1.0)), h * (0.5 * h) - 0.5 * tl.exp(-a))
        return tl.where(x < 0, -r, r)

    @triton.jit
    def _tl_cosh(x):
        h = tl.exp(0.5 * tl.abs(x))
        return h * (0.5 * h) + 0.5 * tl.exp(-tl.abs(x))

    @triton.jit
    def _tl_lgamma(x):
        # log |Gamma(x)|: for x >= 1/2, shifted up to z >= 8 (Gamma(x) = Gamma(z) / (x (x + 1) ... (z - 1)))
        # and Stirling's series there (error < 1e-9); below 1/2 the reflection
        # log |Gamma(x)| = log(pi / |sin(pi x)|) - log |Gamma(1 - x)|
        small = x < 0.5
        z = tl.where(small, 1.0 - x, x)
        prod = tl.full(z.shape, 1.0, tl.float32)
        for _ in range(8):
            below = z < 8.0
            prod = tl.where(below, prod * z, prod)
            z = tl.where(below, z + 1.0, z)
        w = 1.0 / (z * z)
        series = (((-1.0 / 1680.0) * w + 1.0 / 1260.0) * w - 1.0 / 360.0) * w + 1.0 / 12.0
        positive = (z - 0.5) * tl.log(z) - z + 0.9189385332046727 + series / z - tl.log(prod)
        return tl.where(small, tl.log(3.141592653589793 / tl.abs(tl.sin(3.141592653589793 * x))) - positive,
                        positive)

    @triton.jit
    def _tl_digamma(x):
        # psi(x): shifted up to z >= 6 (psi(x) = psi(z) - 1/x - ... - 1/(z - 1)) and its asymptotic series;
        # below 1/2 the reflection psi(x) = psi(1 - x) - pi / tan(pi x)
        small = x < 0.5
        z = tl.where(small, 1.0 - x, x)
        acc = tl.zeros(z.shape, tl.float32)
        for _ in range(6):
            below = z < 6.0
            acc = tl.where(below, acc - 1.0 / z, acc)
            z = tl.where(below, z + 1.0, z)
        w = 1.0 / (z * z)
        series = ((-1.0 / 252.0 * w + 1.0 / 120.0) * w - 1.0 / 12.0) * w
        positive = acc + tl.log(z) - 0.5 / z + series
        return tl.where(small, positive - 3.141592653589793 / (tl.sin(3.141592653589793 * x)
                                                              / tl.cos(3.141592653589793 * x)), positive)

    @triton.jit
    def _tl_trigamma(x):
        # psi'(x): shifted up to z >= 6 and its asymptotic series; below 1/2 the reflection
        # psi'(x) = pi^2 / sin^2(pi x) - psi'(1 - x)
        small = x < 0.5
        z = tl.where(small, 1.0 - x, x)
        acc = tl.zeros(z.shape, tl.float32)
        for _ in range(6):
            below = z < 6.0
            acc = tl.where(below, acc + 1.0 / (z * z), acc)
            z = tl.where(below, z + 1.0, z)
        w = 1.0 / (z * z)
        positive = acc + (1.0 + 0.5 / z + w * (1.0 / 6.0 + w * (-1.0 / 30.0 + w / 42.0))) / z
        s = tl.sin(3.141592653589793 * x)
        return tl.where(small, 9.869604401089358 / (s * s) - positive, positive)

    @triton.jit
    def _tl_sigmoid(x):
        # 1 / (1 + exp(-x)) from e = exp(-|x|): sigmoid(x) and sigmoid(-x) (and softplus of either) share
        # the one exp and the one division once the compiler merges them
        e = tl.exp(-tl.abs(x))
        r = 1.0 / (1.0 + e)
        return tl.where(x >= 0.0, r, e * r)

    @triton.jit
    def _tl_powi(x, N: tl.constexpr):
        # x^N for a small positive integer N, by products (exact as torch.square is)
        r = x
        for _ in tl.static_range(N - 1):
            r = r * x
        return r

    @triton.jit
    def _tl_logratio(d):
        # d / (1 - exp(d)) for d <= 0, with its limit -1 at d = 0
        den = -_tl_expm1(d)
        zero = den == 0.0
        return tl.where(zero, -1.0, d / tl.where(zero, 1.0, den))

    @triton.jit
    def _tl_pos(x):
        return tl.where(x < 0.0, 0.0, x)  # NaN stays NaN, as with torch.relu

    @triton.jit
    def _tl_step(x):
        return tl.where(x > 0.0, 1.0, 0.0)

    @triton.jit
    def _tl_heaviside(x):
        return tl.where(x > 0.0, 1.0, tl.where(x < 0.0, 0.0, 0.5))

    @triton.jit
    def _tl_sign(x):
        return tl.where(x > 0.0, 1.0, tl.where(x < 0.0, -1.0, x * 0.0))

    @triton.jit
    def _tl_lse(x):
        # log-sum-exp of a tile [R, B] along its classes: [R, 1]; -inf for a row of -inf
        m = tl.max(x, axis=1, keep_dims=True)
        safe = tl.where(m == float("-inf"), 0.0, m)
        return m + tl.log(tl.sum(tl.exp(x - safe), axis=1, keep_dims=True))

    @triton.jit
    def _tl_lse_step(m, s, x):
        # online log-sum-exp: the running (max m, sum s of exp(x - m)) [R, 1] after a chunk x [R, B]
        new = tl.maximum(m, tl.max(x, axis=1, keep_dims=True))
        safe = tl.where(new == float("-inf"), 0.0, new)
        return new, s * tl.exp(m - safe) + tl.sum(tl.exp(x - safe), axis=1, keep_dims=True)

    @triton.jit
    def _tl_scale_kernel(g_ptr, go_ptr, n, BLOCK: tl.constexpr):
        # grad *= grad_output (one value), in place, over blocks of BLOCK strided by the grid (a few
        # programs per SM, see _scale_programs); where grad_output is 1 each program reads that one value
        # and stops: no host sync to know it, and no launch of n / BLOCK programs that do nothing
        go = tl.load(go_ptr).to(tl.float32)
        if go != 1.0:
            step = tl.num_programs(0).to(tl.int64) * BLOCK
            for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, step):
                offs = start + tl.arange(0, BLOCK)
                mask = offs < n
                g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                tl.store(g_ptr + offs, (g * go).to(g_ptr.dtype.element_ty), mask=mask)


@functools.lru_cache(maxsize=None)
def _scale_programs(device):
    """Programs of the in-place scaling: 8 per SM on a GPU (full occupancy at 8 warps each); 2 under the
    interpreter (so that a gradient of a few blocks runs the grid-stride loop there)."""
    if device.type != "cuda":
        return 2
    return 8 * torch.cuda.get_device_properties(device).multi_processor_count


def _loss_buffer(x, programs, count, reduce):
    """Where the kernels write the loss: one float32 partial sum per program (reduced), else one value
    per row or element in the input's dtype."""
    return torch.empty((programs if reduce else count,), dtype=torch.float32 if reduce else x.dtype,
                       device=x.device)


class _TritonLoss:
    """Launches the triton kernels of one loss (generated with it): ``forward`` computes the loss
    (per row, or the per-program partial sums of its reduction) and the gradient, already scaled
    by the per-row factors, in one sweep of the logits; ``scale_`` multiplies the gradient by
    grad_output in place in the backward."""

    def __init__(self, form, constants, tile=None, chunked=None, elementwise=None, exact_ties=False, batch=None,
                 vectors=()):
        self.form, self.constants = form, constants
        self.vectors = vectors  # the row kernels' class vectors: tensors [C] (float32) of the parameters P
        self.batch = batch  # the batch form: (sums kernel, gradient kernel, number of sums with N)
        self.tile, self.chunked, self.elementwise = tile, chunked, elementwise
        self.exact_ties = exact_ties
        self.tile_classes, self.chunk, self.serpentine = _TILE_CLASSES, _CHUNK, True

    @contextlib.contextmanager
    def configured(self, tile_classes=None, chunk=None, serpentine=None):
        """Override the regime limits and the chunked kernel's sweep order for a while (tests force the
        chunked regime on small rows; the GPU benchmark times both orders)."""
        saved = self.tile_classes, self.chunk, self.serpentine
        self.tile_classes = saved[0] if tile_classes is None else tile_classes
        self.chunk = saved[1] if chunk is None else chunk
        self.serpentine = saved[2] if serpentine is None else serpentine
        try:
            yield self
        finally:
            self.tile_classes, self.chunk, self.serpentine = saved

    def regime(self, C):
        """"tile" (whole rows in registers, several per program when C is small) or "chunked"."""
        return "tile" if C <= self.tile_classes else "chunked"

    def _launch(self, fn, grid, args, meta, num_warps):
        launch(fn, grid, args, meta, num_warps, self.exact_ties)

    def forward(self, x, t, valid, w, den, mul, P, reduction, need_grad, into=None):
        """(loss, gradient); ``into``: the gradient's buffer (x itself for inplace_grad: every element
        is read before the same program writes its gradient there, in the last sweep)."""
        if self.tile is not None:  # (the row form's kernels)
            return self._row(x, t, valid, w, den, mul, P, reduction, need_grad, into)
        return self._elementwise(x, t, valid, w, den, mul, P, reduction, need_grad, into)

    @staticmethod
    def _flags(x, valid, w, den):
        dummy = x
        return ((dummy if valid is None else valid.view(torch.uint8)), (dummy if w is None else w),
                (dummy if den is None else den),
                dict(HAS_VALID=valid is not None, HAS_W=w is not None, HAS_DEN=den is not None))

    def _row(self, x, t, valid, w, den, mul, P, reduction, need_grad, into=None):
        # t: the target classes [M], or soft targets q [N, C, S] (any float dtype, strided as it is)
        N, C, S = x.shape
        soft = t.dim() == 3
        rows = N * S
        consts = self.constants(P, C)
        grad = into if into is not None else \
            torch.empty((N, C, S), dtype=x.dtype, device=x.device) if need_grad else x.new_empty(0)
        if self.regime(C) == "tile":
            block_c = _next_power_of_2(C)
            block_r = max(1, min(_MAX_ROWS, _TILE_ELEMENTS // block_c))
            fn, extra = self.tile, {}
        else:
            block_c, block_r = _next_power_of_2(min(self.chunk, C)), 1
            fn = self.chunked
            extra = dict(SERPENTINE=self.serpentine)
        warps = _warps(block_r, block_c)
        image_blocks = S > 1 and S >= block_r > 1  # (see the kernels: whole blocks of one n's positions)
        programs = (N * triton.cdiv(S, block_r) if image_blocks else triton.cdiv(rows, block_r)) if rows else 0
        reduce = reduction != "none"
        out = _loss_buffer(x, programs, rows, reduce)
        if programs:
            valid_p, w_p, den_p, flags = self._flags(x, valid, w, den)
            g = grad if need_grad else x
            args = (x, t, valid_p, w_p, den_p, out, g, rows, C, S, *x.stride()) + (t.stride() if soft else ()) \
                + g.stride() + (*(getattr(P, name) for name in self.vectors), float(mul), *consts)
            align = min(_alignment(x, C, S), _alignment(t, C, S)) if soft else _alignment(x, C, S)
            stride = max(abs(x.stride(1)), abs(t.stride(1)) if soft else 0, S)
            self._launch(fn, (programs,), args, dict(flags, REDUCE=reduce, NEED_GRAD=need_grad, BLOCK_R=block_r,
                                                      BLOCK_C=block_c, S_GT_1=S > 1, IMAGE_BLOCKS=image_blocks,
                                                      ALIGN=align, WIDE=C * stride >= 2 ** 31, **extra), warps)
        return (out.sum().to(x.dtype) if reduce else out), grad

    def _elementwise(self, x, t, valid, w, den, mul, P, reduction, need_grad, into=None):
        n = x.numel()
        consts = self.constants(P, None)
        grad = into if into is not None else \
            torch.empty_like(x, memory_format=torch.contiguous_format) if need_grad else x.new_empty(0)
        programs = triton.cdiv(n, _BLOCK) if n else 0
        reduce = reduction != "none"
        out = _loss_buffer(x, programs, n, reduce)
        if programs:
            valid_p, w_p, den_p, flags = self._flags(x, valid, w, den)
            args = (x, t, valid_p, w_p, den_p, out, grad if need_grad else x, n, float(mul), *consts)
            self._launch(self.elementwise, (programs,), args,
                         dict(flags, REDUCE=reduce, NEED_GRAD=need_grad, BLOCK=_BLOCK), 8)
        return (out.sum().to(x.dtype) if reduce else out), grad

    def scale_(self, grad, grad_output):
        """grad *= grad_output (a scalar, or one value per row of the loss), in place."""
        if not grad.numel():
            return
        go = grad_output.reshape(-1)
        if go.numel() == 1:  # a scalar (or a loss of one row: the same)
            programs = min(triton.cdiv(grad.numel(), _SCALE_BLOCK), _scale_programs(grad.device))
            self._launch(_tl_scale_kernel, (programs,), (grad, go, grad.numel()), dict(BLOCK=_SCALE_BLOCK),
                         _warps(1, _SCALE_BLOCK))
        elif grad.dim() == 1:  # one value per element
            grad.mul_(go)
        else:  # one value per row (n, s) of a [N, C, S] gradient (computed in float32 by torch)
            grad.mul_(go.reshape(grad.shape[0], 1, grad.shape[2]))

    # -- the batch form: partial sums per program, summed by torch (deterministic), then the gradient

    def batch_sums(self, x, t, w, P, from_logits):
        """[B_1 … B_k, N] (float32) of a batch loss: each program's partial sums, then their sum."""
        n = x.numel()
        consts = self.constants(P, None)
        programs = triton.cdiv(n, _BLOCK) if n else 0
        width = self.batch[2]
        part = (torch.empty if programs else torch.zeros)((max(programs, 1), width), dtype=torch.float32,
                                                          device=x.device)  # (every program writes its row)
        if programs:
            self._launch(self.batch[0], (programs,), (x, t, x if w is None else w, part, n, *consts),
                         dict(HAS_W=w is not None, FROM_LOGITS=bool(from_logits), BLOCK=_BLOCK), 8)
        return part.sum(0)

    def batch_grad(self, x, t, w, sums, P, from_logits):
        """(the loss (float32, [1]) or None for an empty batch, dL/dx of every element (x's dtype)) of a batch
        loss, from the (all-reduced) sums."""
        n = x.numel()
        consts = self.constants(P, None)
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)
        programs = triton.cdiv(n, _BLOCK) if n else 0
        if not programs:
            return None, grad
        loss = torch.empty(1, dtype=torch.float32, device=x.device)
        self._launch(self.batch[1], (programs,), (x, t, x if w is None else w, sums.to(torch.float32).contiguous(),
                                                  loss, grad, n, *consts),
                     dict(HAS_W=w is not None, FROM_LOGITS=bool(from_logits), BLOCK=_BLOCK), 8)
        return loss, grad
