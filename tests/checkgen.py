"""A small seeded generator of one-variable losses (margin, regression, binary) for auditing the property
checker, each with its own truth: the expression as written, evaluated by mpmath at 50 digits (never
lossc's printers), and the switching functions where it may have a kink. Kept small and replaceable
(tests/genloss.py, the backends' generator, covers the whole language).

A loss is a tree of ``Node`` s; each node has its ``.loss`` source text and an mpmath function of the
variable. Kinks come from ``where`` conditions, ``pos``, ``abs``, ``min``/``max``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import mpmath

mpmath.mp.dps = 50
mpf = mpmath.mpf


@dataclass(frozen=True)
class Node:
    src: str
    fn: Callable  # mpf -> mpf
    switches: tuple = field(default=())  # functions whose sign changes mark possible kinks


def _num(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def const(v) -> Node:
    c = mpf(v)
    return Node(_num(v) if v >= 0 else f"({_num(v)})", lambda x: c)


def var(name: str) -> Node:
    return Node(name, lambda x: x)


def affine(x: Node, a, b) -> Node:
    A, B = mpf(a), mpf(b)
    return Node(f"({_num(a)} * {x.src} + {_num(b)})" if b >= 0 else f"({_num(a)} * {x.src} - {_num(-b)})",
                lambda t: A * x.fn(t) + B, x.switches)


def add(a: Node, b: Node) -> Node:
    return Node(f"({a.src} + {b.src})", lambda t: a.fn(t) + b.fn(t), a.switches + b.switches)


def sub(a: Node, b: Node) -> Node:
    return Node(f"({a.src} - {b.src})", lambda t: a.fn(t) - b.fn(t), a.switches + b.switches)


def scale(c, a: Node) -> Node:
    C = mpf(c)
    return Node(f"({_num(c)} * {a.src})", lambda t: C * a.fn(t), a.switches)


def mul(a: Node, b: Node) -> Node:
    return Node(f"({a.src} * {b.src})", lambda t: a.fn(t) * b.fn(t), a.switches + b.switches)


def pos(a: Node) -> Node:
    return Node(f"pos({a.src})", lambda t: max(a.fn(t), mpf(0)), a.switches + (a.fn,))


def absn(a: Node) -> Node:
    return Node(f"abs({a.src})", lambda t: abs(a.fn(t)), a.switches + (a.fn,))


def power(a: Node, k) -> Node:
    """a^k: integer k any base; fractional k only for a base that is >= 0 by construction."""
    K = mpf(k)
    return Node(f"{a.src}^{_num(k)}", lambda t: a.fn(t) ** K, a.switches)


def _exp(v):
    """exp, but +inf for arguments past 1e4 (e^1e4 is past any float; exp of that would take mpmath an
    integer of ~1e4000 bits: a hang)."""
    return mpmath.inf if v > 10000 else mpmath.exp(v)


def func(name: str, a: Node) -> Node:
    f = {"exp": _exp, "softplus": lambda v: v + mpmath.log1p(mpmath.exp(-v)) if v > 0 else mpmath.log1p(mpmath.exp(v)),
         "sigmoid": lambda v: 1 / (1 + _exp(-v)), "tanh": mpmath.tanh,
         "log1psq": lambda v: mpmath.log(1 + v * v), "sqrt1p": lambda v: mpmath.sqrt(1 + v * v)}[name]
    src = {"log1psq": f"log(1 + {a.src}^2)", "sqrt1p": f"sqrt(1 + {a.src}^2)"}.get(name, f"{name}({a.src})")
    return Node(src, lambda t: f(a.fn(t)), a.switches)


def where(x: Node, op: str, c, a: Node, b: Node) -> Node:
    C = mpf(c)
    test = {"<": lambda v: v < C, "<=": lambda v: v <= C, "abs<": lambda v: abs(v) < C}[op]
    cond = f"abs({x.src}) < {_num(c)}" if op == "abs<" else f"{x.src} {op} {_num(c)}" if c >= 0 else \
        f"{x.src} {op} ({_num(c)})"
    switch = (lambda t: abs(x.fn(t)) - C) if op == "abs<" else (lambda t: x.fn(t) - C)
    return Node(f"where({cond}, {a.src}, {b.src})", lambda t: a.fn(t) if test(x.fn(t)) else b.fn(t),
                a.switches + b.switches + (switch,))


def minmax(which: str, a: Node, b: Node) -> Node:
    pick = min if which == "min" else max
    return Node(f"{which}({a.src}, {b.src})", lambda t: pick(a.fn(t), b.fn(t)),
                a.switches + b.switches + ((lambda t: a.fn(t) - b.fn(t)),))


# ---------------------------------------------------------------------------- random trees

SMALL = (-2, -1, -0.5, 0.5, 1, 2)


def _leaf(rng: random.Random, x: Node) -> Node:
    r = rng.random()
    if r < 0.6:
        return affine(x, rng.choice(SMALL), rng.choice((0, 1, -1, 0.5, 2)))
    if r < 0.8:
        return x
    return const(rng.choice((0, 1, 2, 0.5)))


def tree(rng: random.Random, x: Node, depth: int) -> Node:
    """A random expression in x."""
    if depth <= 0:
        return _leaf(rng, x)
    a = lambda: tree(rng, x, depth - 1)  # noqa: E731
    r = rng.randrange(15)
    if r == 0:
        return add(a(), a())
    if r == 1:
        return sub(a(), a())
    if r == 2:
        return scale(rng.choice((0.5, 2, -1, 3)), a())
    if r == 3:
        return mul(a(), a()) if depth > 1 else power(a(), 2)
    if r == 4:
        return pos(a())
    if r == 5:
        return absn(a())
    if r == 6:
        return power(a(), rng.choice((2, 3)))
    if r == 7:
        base = pos(a()) if rng.random() < 0.5 else absn(a())
        return power(base, rng.choice((0.5, 1.5, 2.5)))
    if r == 8:
        return func(rng.choice(("softplus", "sigmoid", "tanh", "log1psq", "sqrt1p")), a())
    if r == 9:
        return func("exp", scale(rng.choice((-1, -0.5, 0.5)), a()))
    if r == 10:
        return minmax(rng.choice(("min", "max")), a(), a())
    return _kinked(rng, x, depth)


def _kinked(rng: random.Random, x: Node, depth: int) -> Node:
    """where(x OP c, A, B) with B built to meet A in value (and maybe slope) at c, or to jump by a little."""
    c = rng.choice((-1, 0, 0.5, 1, 2))
    op = rng.choice(("<", "<=", "abs<")) if c > 0 else rng.choice(("<", "<="))
    A = tree(rng, x, depth - 1)
    style = rng.randrange(5)
    if style == 0:  # B = A + d (x - c)^2: value and slope continuous at c (smooth when A is)
        B = add(A, scale(rng.choice((0.5, 1, -1)), power(affine(x, 1, -c), 2)))
    elif style == 1:  # B = A + d (x - c): a slope change at c
        B = add(A, scale(rng.choice((0.5, 1, -1)), affine(x, 1, -c)))
    elif style == 2:  # a value jump with matching slopes
        B = add(A, const(rng.choice((1, 0.5))))
    elif style == 3:  # a jump at the point itself: where(x == c)-like, via where(x < c, A, where(x <= c, A + 1, A))
        B = where(x, "<=", c, add(A, const(1)), A)
        return where(x, "<", c, A, B)
    else:
        B = tree(rng, x, depth - 1)
    return where(x, op, c, A, B)


@dataclass(frozen=True)
class Loss:
    kind: str
    source: str
    cases: dict       # label value -> mpmath function of the variable (margin: {1: phi}; regression: {0: L(r)})
    switches: tuple   # functions whose sign changes mark the possible kinks

    def value(self, x, label=None):
        f = self.cases[label if label is not None else next(iter(self.cases))]
        return f(mpf(x))


def generate(seed: int, kind: str | None = None, depth: int | None = None) -> Loss:
    """One random loss of the given kind (margin, regression or binary), reproducible from the seed."""
    rng = random.Random(seed)
    kind = kind or rng.choice(("margin", "regression", "binary"))
    depth = depth if depth is not None else rng.choice((1, 2, 2, 3))
    name = f"gen{seed}"
    if kind in ("margin", "regression"):
        v = "m" if kind == "margin" else "r"
        body = tree(rng, var(v), depth)
        return Loss(kind, f"loss {name}() over {kind}:\n    return {body.src}\n",
                    {1 if kind == "margin" else 0: body.fn}, body.switches)
    f = var("f")
    mirror = rng.random() < 0.4  # the other label's loss mirrored, as BCE's: l_0(f) = l_1(-f)
    state = rng.getstate()
    pos_part = tree(rng, f, depth)
    if mirror:
        twin = random.Random()
        twin.setstate(state)
        neg_part = tree(twin, Node("(-f)", lambda t: -t), depth)
    else:
        neg_part = tree(rng, f, depth)
    src = f"loss {name}() over binary:\n    return y * {pos_part.src} + (1 - y) * {neg_part.src}\n"
    return Loss(kind, src, {1: pos_part.fn, 0: neg_part.fn}, pos_part.switches + neg_part.switches)


def kinks(loss: Loss, lo: float = -30, hi: float = 30, n: int = 1201) -> list:
    """Where a switching function changes sign (bisected to 40 digits) or touches 0 on the grid."""
    xs = [mpf(lo) + (mpf(hi) - mpf(lo)) * i / (n - 1) for i in range(n)]
    out = set()
    for g in loss.switches:
        vals = [g(x) for x in xs]
        for i in range(n - 1):
            a, b = vals[i], vals[i + 1]
            if a == 0:
                out.add(xs[i])
            elif (a < 0) != (b < 0) and b != 0:
                x0, x1 = xs[i], xs[i + 1]
                for _ in range(140):
                    mid = (x0 + x1) / 2
                    if (g(mid) < 0) == (a < 0):
                        x0 = mid
                    else:
                        x1 = mid
                out.add((x0 + x1) / 2)
    return sorted(out)
