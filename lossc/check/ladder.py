"""The ladder every property climbs: proof attempts and counterexample searches in the order a property
states them (``lossc/check/properties/<name>.py``), the first verdict wins, and the rest is shared here.

- ``climb(*rungs, otherwise=...)``: each rung returns a Verdict or None (decides nothing); a proof rung
  (``proof(fn)``) that raises ``UNDECIDED`` (sympy could not follow) decides nothing either; when no rung
  decides, ``otherwise()`` says what was searched (``plausible``) or why nothing was decided (``unknown``).
  ``proved`` comes only from a proof rung; a search rung returns ``refuted`` only for a counterexample
  it re-evaluated (``recheck``).
- ``decide(name, checker)``: the property's rungs for the checker's normal form (the function named
  like ``ctx.spec.form`` in the property's file), memoised (calibration reuses convexity).
- ``run_all(ctx, make_checker, timeout, memory_mb)``: every property under its time and memory budget
  (budget.run_properties); an exception in a check is ``unknown`` with its reason, never raised.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .budget import failed, run_properties
from .onevar import Undecided
from .verdict import PROPERTIES, Verdict, not_applicable

UNDECIDED = (Undecided, NotImplementedError, TypeError, ValueError)  # a proof attempt that cannot go on
Rung = Callable[[], "Verdict | None"]


def proof(attempt: Rung) -> Rung:
    """A symbolic rung: what it cannot follow (``UNDECIDED``) decides nothing."""
    def rung():
        try:
            return attempt()
        except UNDECIDED:
            return None
    return rung


def climb(*rungs: Rung, otherwise: Callable[[], Verdict]) -> Verdict:
    """The first verdict of ``rungs`` in order, else ``otherwise()``."""
    for rung in rungs:
        verdict = rung()
        if verdict is not None:
            return verdict
    return otherwise()


def recheck(again: Callable, holds: Callable):
    """A counterexample's numbers evaluated once more (``again()``): them if ``holds`` of them, else None
    (a search reports only what holds when re-evaluated)."""
    value = again()
    return value if holds(value) else None


def _property(name: str):
    return importlib.import_module(f"{__package__}.properties.{name}")


def decide(name: str, checker) -> Verdict:
    """One property's verdict for the checker's normal form (memoised in ``checker._memo``); ``n/a`` when
    the property's file states no ladder for that form."""
    memo = checker._memo
    if name not in memo:
        form = checker.ctx.spec.form
        ladder = getattr(_property(name), form, None)
        if ladder is None:
            return not_applicable(f"{name} does not apply to {checker.ctx.spec.kind} losses")
        memo[name] = ladder(checker)
    return memo[name]


class Checker:
    """What the properties of one normal form share (``ctx``, the memo); ``checker.convex()`` etc. climb the
    property's ladder."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.setting = ctx.setting()
        self._memo: dict = {}

    @property
    def ev(self):
        return self.ctx.evaluator


for _name in PROPERTIES:
    setattr(Checker, _name, lambda self, _name=_name: decide(_name, self))


def _run(checker, name: str, ctx, known: dict) -> Verdict:
    """One property; ``known``: the verdicts decided so far (seeded into the memo for the checks that
    reuse them)."""
    memo = getattr(checker, "_memo", None)
    if isinstance(memo, dict):
        for other, verdict in known.items():
            memo.setdefault(other, verdict)
    method = getattr(checker, name, None)
    if method is None:
        return not_applicable(f"{name} does not apply to {ctx.spec.kind} losses")
    try:
        return method()
    except MemoryError:
        raise  # (the budget's verdict)
    except Exception as err:  # noqa: BLE001 - the checker never raises: unknown, with the reason
        return failed(err)


def run_all(ctx, make_checker: Callable, timeout: float, memory_mb: float) -> dict:
    """{name: Verdict} for every property, each under its budget."""
    return run_properties(make_checker, lambda checker, name, known: _run(checker, name, ctx, known),
                          PROPERTIES, timeout, memory_mb)
