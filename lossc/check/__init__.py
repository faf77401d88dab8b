"""Property checks: ``lossc.check(spec, **params)[name].verdict / .evidence`` and ``lossc.poly``.

Each property gets ``proved`` (a symbolic argument, printed), ``refuted`` (a
counterexample re-evaluated in float64 through the generated code, with its
numbers), ``plausible`` (a numerical search found nothing), ``unknown`` or
``n/a``. Sampling never proves. See MATH.md for the decision procedures.
"""

from __future__ import annotations

from ..errors import LossError, LossParamError
from . import cache
from .budget import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, default_timeout, is_budget_verdict
from .verdict import PROPERTIES, Report, Verdict, unknown

__all__ = ["check", "poly", "Verdict", "Report", "PROPERTIES", "DEFAULT_TIMEOUT", "DEFAULT_MEMORY_MB"]


def _filled(spec, params: dict) -> dict:
    """Every parameter's value: given ones, else the default (what the verdicts are about)."""
    out = {}
    bound = dict(spec.bound)
    for p in spec.params:
        if p.name in params:
            value = params[p.name]
            if hasattr(value, "tolist"):
                value = value.tolist()
            out[p.name] = list(value) if isinstance(value, tuple) else value
        elif p.type == "int":
            out[p.name] = bound.get(p.name, p.default)
        elif p.type == "vector":
            n = bound[p.size]
            d = list(p.default or ())
            out[p.name] = d if len(d) == n else d * n
        else:
            out[p.name] = p.default
    return out


def _prepare(spec, over, params):
    from .. import api
    parsed = api.parse(spec, over=over, **params)
    filled = _filled(parsed, params if over is None else {})
    try:
        api.module(parsed)._params(**filled)  # the where-lines, checked like the generated module does
    except LossError:
        raise
    except TypeError as err:
        raise LossParamError(f"{parsed.name}: {err}") from None
    from ..codegen import unweighted
    from .context import Context
    return Context(unweighted(parsed), filled)  # the loss without class weights (weight = 1)


def check(spec, *, over: str | None = None, use_cache: bool = True, timeout: float | None = None,
          memory_mb: float = DEFAULT_MEMORY_MB, **params) -> Report:
    """Verdicts for every property of a loss at the given parameter values (defaults otherwise).

    Bad input (the spec, its parameters) raises a ``LossError``; after that nothing raises: a property
    whose check fails is ``unknown`` with the reason, and each property has ``timeout`` seconds and
    ``memory_mb`` MiB (``unknown (timed out)`` / ``unknown (memory budget exceeded)`` past them); the
    timeout defaults to $LOSSC_CHECK_TIMEOUT or 10 s."""
    if timeout is None:
        timeout = default_timeout()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise LossParamError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, (int, float)) or not memory_mb > 0:
        raise LossParamError(f"memory_mb must be a positive number of MiB, got {memory_mb!r}")
    ctx = _prepare(spec, over, params)
    k = cache.key(ctx.spec.hash, ctx.params)
    if use_cache:
        hit = cache.load(k)
        if hit is not None:
            return hit
    import torch
    report = Report(ctx.spec.name, ctx.spec.kind, ctx.params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the numerical searches use tiny tensors: more threads only spin (10x slower on busy cores)
    try:
        ctx.warm()  # the generated code, compiled once before the workers fork
        from .ladder import run_all
        report.verdicts.update(run_all(ctx, lambda: _checker(ctx), timeout, memory_mb))
    finally:
        torch.set_num_threads(threads)
    if not any(is_budget_verdict(v) for v in report.values()):  # a budget's verdict is not the loss's
        cache.store(k, report)
    return report


class _NotAnalysed:
    """Losses the decision procedures do not cover yet: every verdict unknown, with the reason."""

    def __init__(self, reason: str):
        self.reason = reason

    def __getattr__(self, name: str):
        if name in PROPERTIES:
            return lambda: unknown(self.reason)
        raise AttributeError(name)


def _not_analysed(spec) -> str | None:
    if set(spec.class_vectors) - {"weight"}:  # (class weights are checked at weight = 1)
        return ("not analysed: the loss reads class vectors (" + ", ".join(spec.class_vectors) + "), which "
                "the decision procedures of MATH.md do not cover yet")
    if spec.kind not in ("multiclass", "binary", "margin", "regression"):
        return f"not analysed: the decision procedures of MATH.md do not cover {spec.kind} losses yet"
    return None


def _checker(ctx):
    """The checker of the loss's normal form (its properties' shared analysis)."""
    form = ctx.spec.normal_form
    if form.batch_sums or form.task_losses:
        from .batch import Batch, Composite
        return Batch(ctx) if form.batch_sums else Composite(ctx)
    reason = _not_analysed(ctx.spec)
    if reason:
        return _NotAnalysed(reason)
    if form.rows:
        from .multiclass import Multiclass
        return Multiclass(ctx)
    from .elementwise import Elementwise
    return Elementwise(ctx)


def poly(spec, order: int = 5, *, over: str | None = None, **params) -> dict:
    """PolyLoss coefficients {j: alpha_j} of a loss of p_t alone, in the basis (1 - p_t)^j (exact where sympy
    can; for non-integer powers, as in focal loss with non-integer gamma, the keys are the exponents)."""
    return poly_expansion(spec, order, over=over, **params)["coefficients"]


def poly_expansion(spec, order: int = 5, *, over: str | None = None, **params) -> dict:
    """The expansion with its details: coefficients, whether the powers are integers, the leading
    gradient term -dL/dp_t around p_t = 1, and g(p_t)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise LossParamError(f"order must be a positive integer, got {order!r}")
    from .poly import expansion
    return expansion(_prepare(spec, over, params), order)
