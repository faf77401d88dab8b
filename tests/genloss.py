"""Random well-formed losses and their high-precision truth, independent of lossc.

API (importable by tests and scripts; ``sys.path`` must hold ``tests/``):

- ``generate(kind, rng, avoid=()) -> GeneratedLoss``: a seeded random loss of ``kind`` (multiclass,
  distribution, binary, margin, regression, batch), built as a small AST of this module's own ``Node`` s.
  ``avoid`` drops constructs that hit known defects (see ``AVOIDABLE``).
- ``GeneratedLoss.source``: its ``.loss`` text (printed from the AST here, fully parenthesised);
  ``.params``: the runtime parameter values (name -> float or list); ``.kind``; ``.name``.
- ``GeneratedLoss.row_truth(inputs, dtype_tie=...) -> RowTruth``: the value and the gradient of ONE row
  (multiclass/distribution: one row of logits), ONE element (binary/margin/regression) or the WHOLE batch
  (batch kind), evaluated with mpmath at 50 digits from the AST (never from lossc's parser, IR or
  printers). Gradients are high-precision central differences (h = 1e-34 relative, at 75 digits) on the same AST; a
  ``detach(x)`` is evaluated at the unperturbed point, so its gradient is that of a constant. ``RowTruth``
  also carries ``kink`` (the smallest relative distance of any non-smooth point met: a ``where``
  boundary, ``abs``/``pos``/``clamp``/``min``/``max`` switch, a class max tie, a fractional power at 0;
  the gradient is not compared where it is within a dtype's threshold), ``scale`` (the largest magnitude of
  any intermediate, for tolerances) and ``big``/``tiny`` (the largest intermediate and the smallest
  sensitive one, to tell which dtypes can represent the computation as written).
- ``RowTruth.grad_rev``: per component, a bound (unit roundoffs) on eager autograd's own error of the
  gradient (``rev_bound``: the sum over reverse-mode paths of |local derivative products|, with each local
  derivative's rounding), for the reference backend; ``RowTruth.grad_conv``: where an abs, pos or root sits
  exactly at its kink, the gradient of the convention that its derivative is 0 there (docs/semantics.md),
  else None.
- ``value_with_flips(...)``: the value with near-tie ``where`` conditions resolved the other way (a
  backend computing the condition in low precision may land on either side).
- ``to_json(node)`` / ``from_json(obj)``: the AST as JSON (fixtures); ``shrink_candidates(loss)``: smaller
  variants of a loss for the shrinker.

Catalog losses called from a generated loss are evaluated from this module's own hand-written formulas
(``CALLS``), built as ASTs of the same nodes.
"""

from __future__ import annotations

import copy
import math
import random
import re
from dataclasses import dataclass, field, replace

import mpmath

mpf = mpmath.mpf

KINDS = ("multiclass", "distribution", "binary", "margin", "regression", "batch")

#: names known to collide with lossc's internal symbols (a known defect, helper `frontend`)
CAPTURE_NAMES = ("t", "u", "R1", "R2", "A1", "A2", "B1", "B2")
#: constructs that hit known, separately tracked defects; ``generate(avoid=...)`` leaves them out
AVOIDABLE = {
    "capture": "parameters and locals named t, u, R1, A1, B1 ... (name capture, helper frontend)",
    "pow0": "a fractional or parametric power whose base can reach 0 (NaN gradient of b^g at b = 0, helper numerics)",
    "softplus": "softplus and the catalog losses built on it (reference backend: gradient 0 at x = 0, helper numerics)",
    "batch_exp": "a reciprocal of batch sums, exp/sigmoid inside a batch sum (triton batch kernel: 1 / (1 + e) "
                 "printed without parentheses, wrong values, helper numerics)",
    "positional2": "a second positional argument in a loss call (refused although docs/language.md allows it, "
                   "helper frontend)",
    "const_where": "a where whose condition reads no input, only parameters, C or literals (RecursionError in "
                   "the torch printer, helper frontend)",
}

#: per-class parameter names the language refuses in a row kind: their entries p[j], q[j], z[j] are the row
#: form's own (docs/language.md)
_ROW_ENTRIES = ("p", "q", "z")

_NAME_POOL = ("alpha", "beta", "gamma", "k", "lam", "w0", "T", "a", "b", "c", "x", "eps", "delta", "L",
              "m", "N", "q", "s", "h", "v", "w", "tmp", "a1", "g2", "rho", "kappa", "zz", "yy", "mu", "nu",
              "t", "u", "R1", "R2", "A1", "A2", "B1", "B2")
_RESERVED = {"multiclass": {"z", "y", "C", "p_t", "weight", "j", "i", "k"},
             "distribution": {"z", "q", "C", "weight", "j", "i", "k", "y"},
             "binary": {"f", "y", "i", "j", "k"},
             "margin": {"m", "f", "y", "i", "j", "k"},
             "regression": {"r", "yhat", "y", "i", "j", "k"},
             "batch": {"s", "y", "N", "i", "j", "k"}}
_FUNCS = {"log", "exp", "sqrt", "abs", "log1p", "expm1", "softplus", "sigmoid", "tanh", "min", "max", "clamp",
          "sin", "cos", "atan", "acos", "sinh", "cosh", "lgamma", "digamma", "sign", "pi",
          "where", "pos", "detach", "sum", "mean", "logsumexp", "softmax", "log_softmax", "and", "or", "not",
          "in", "for", "if", "is", "loss", "over", "return", "learn", "lambda", "def", "class", "None", "True",
          "False", "pass", "else", "del", "with", "as", "from", "import", "global", "while", "try", "yield"}
# literal numbers: dyadic ones are exact in every dtype (ties at where boundaries are exact)
_DYADIC = ("0", "0.5", "1", "2", "0.25", "1.5", "3")
_LITERALS = _DYADIC + ("0.1", "0.37", "1e-3", "2.5", "0.7", "1.25")


# ---------------------------------------------------------------------------------------------------------
# the AST
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    """op, children, and a payload: a literal's text, a name, a function name, (reduction, excl) ..."""

    op: str
    args: tuple = ()
    val: object = None


def num(text: str) -> Node:
    return Node("num", (), text)


def leaf(name: str) -> Node:
    return Node("in", (), name)


def fn(name: str, x: Node) -> Node:
    return Node("fn", (x,), name)


def bin_(op: str, a: Node, b: Node) -> Node:
    return Node(op, (a, b))


def where(a: Node, cmp: str, b: Node, yes: Node, no: Node) -> Node:
    return Node("where", (Node("cmp", (a, b), cmp), yes, no))


ONE = num("1")


# printed forms of the kind leaves
_LEAF_TEXT = {"zy": "z[y]", "pt": "p_t", "lse": "logsumexp(z)", "lsmy": "log_softmax(z)[y]",
              "smy": "softmax(z)[y]", "C": "C", "f": "f", "y": "y", "m": "m", "r": "r", "yhat": "yhat",
              "zj": "z[j]", "smj": "softmax(z)[j]", "lsmj": "log_softmax(z)[j]", "ind": "(j == y)",
              "qj": "q[j]", "s": "s", "si": "s[i]", "yi": "y[i]", "N": "N"}
# leaves whose value is computed exactly from the inputs (a where boundary on them is an exact tie)
_EXACT_LEAVES = {"zy", "f", "y", "m", "r", "yhat", "zj", "qj", "s", "si", "yi", "ind", "C", "N"}


def to_source(node: Node) -> str:
    """The expression's .loss text, fully parenthesised."""
    op, a, v = node.op, node.args, node.val
    if op == "num":
        return v
    if op == "in":
        return _LEAF_TEXT[v]
    if op in ("param", "local"):
        return v
    if op == "vecy":
        return f"{v}[y]"
    if op == "vecj":
        return f"{v}[j]"
    if op in ("add", "sub", "mul", "div"):
        sym = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[op]
        return f"({to_source(a[0])} {sym} {to_source(a[1])})"
    if op == "neg":
        return f"(-{to_source(a[0])})"
    if op == "pow":
        return f"({to_source(a[0])})^({to_source(a[1])})"
    if op == "fn":
        return f"{v}({to_source(a[0])})"
    if op in ("min2", "max2"):
        return f"{op[:3]}({to_source(a[0])}, {to_source(a[1])})"
    if op == "clamp":
        return f"clamp({to_source(a[0])}, {to_source(a[1])}, {to_source(a[2])})"
    if op == "cmp":
        return f"{to_source(a[0])} {v} {to_source(a[1])}"
    if op == "where":
        return f"where({to_source(a[0])}, {to_source(a[1])}, {to_source(a[2])})"
    if op == "red":
        red, excl = v
        return f"{red}({to_source(a[0])} for j{' != y' if excl else ''})"
    if op == "bred":
        return f"{v}({to_source(a[0])} for i)"
    if op == "lsmT":  # log_softmax(z / T)[y]
        return f"log_softmax(z / {to_source(a[0])})[y]"
    if op == "call":
        name, keys = v
        parts = [to_source(x) if k is None else f"{k}={to_source(x)}" for k, x in zip(keys, a)]
        return f"{name}({', '.join(parts)})"
    raise ValueError(op)


@dataclass(frozen=True)
class GeneratedLoss:
    kind: str
    name: str
    params: tuple          # ((name, kind 'scalar'|'vector', value float | tuple), ...)
    locals: tuple          # ((name, Node), ...)
    ret: Node
    features: frozenset = frozenset()

    @property
    def source(self) -> str:
        header = []
        for pname, ptype, value in self.params:
            header.append(f"{pname}[C] = 1.0" if ptype == "vector" else f"{pname} = {_default_text(value)}")
        lines = [f"loss {self.name}({', '.join(header)}) over {self.kind}:"]
        lines += [f"    {lname} = {to_source(expr)}" for lname, expr in self.locals]
        lines.append(f"    return {to_source(self.ret)}")
        return "\n".join(lines) + "\n"

    @property
    def runtime_params(self) -> dict:
        return {p: (list(v) if t == "vector" else v) for p, t, v in self.params}

    def row_truth(self, inputs: dict, flip: float = 0.0, grad: bool = True, underflow: float = 1e-300
                  ) -> "RowTruth":
        return row_truth(self, inputs, flip, grad, underflow)


def _default_text(value: float) -> str:
    return repr(float(value))


# ---------------------------------------------------------------------------------------------------------
# evaluation in mpmath
# ---------------------------------------------------------------------------------------------------------

class _Rec:
    """What one evaluation met: the nearest kink, the largest intermediate, the smallest sensitive one."""

    def __init__(self, flip: float = 0.0, underflow: float = 1e-300):
        self.kink = math.inf
        self.underflow = underflow  # differences below it are beyond the dtype's range: a tie within rounding
        self.big = mpf(0)
        self.tiny = mpf("inf")
        self.flip = flip        # where-conditions within this relative distance of their boundary flip
        self.flipped = False
        self.tie = False        # a where condition exactly on its boundary
        self.root_at_zero = 1.0  # the smallest exponent in (0, 1) met with a base exactly 0
        #: abs, pos, sqrt and fractional powers met exactly at their kink (argument 0), keyed by (node, i, j):
        #: their (value, bound) there, for the convention gradient (docs/semantics.md: derivative 0 there)
        self.at_kink = {}

    def kink_atom(self, node, env, v, e):
        self.at_kink[(node, env.i, env.j)] = (v, e)

    def see(self, v):
        a = abs(v)
        if a > self.big:
            self.big = a

    def sensitive(self, v):
        a = abs(v)
        if a < self.tiny:
            self.tiny = a

    def near(self, a, b, ea=0, eb=0):
        """The relative distance of a and b, against their magnitudes and error bounds (a computed quantity
        compared with 0 is near it when it is within its own rounding error)."""
        d = abs(a - b)
        s = abs(a) + abs(b) + ea + eb
        rel = mpf(0) if d == 0 else mpf(1e-300) if d < self.underflow else d / s
        if 0 < rel < self.kink:
            self.kink = float(rel)
        return rel


@dataclass
class Env:
    kind: str
    params: dict                # name -> mpf or list of mpf
    z: list | None = None       # multiclass / distribution row
    y: object = None            # target: int (multiclass), mpf (elementwise), list (batch)
    q: list | None = None       # distribution target
    x: object = None            # elementwise input (f / yhat) or batch inputs (list of s)
    locals: dict = field(default_factory=dict)
    j: int | None = None
    i: int | None = None
    base: "Env | None" = None
    rec: _Rec | None = None
    cache: dict = field(default_factory=dict)
    #: the relative error the comparison allows per unit of the running bound (gencheck.ERR): a root's
    #: bound near 0 is not first order, (b + unit e)^p - b^p over unit, so it needs the scale
    unit: object = mpf("1e-10")
    #: the convention gradient's evaluation: atoms at their kink read their value at the base point
    frozen: dict | None = None
    #: the dtype's unit roundoff (the reverse-mode bound's saturated tanh and sigmoid)
    roundoff: object = mpf(2) ** -53

    def scalar(self, name: str):
        k = self.kind
        # the class's and the element's own values first (they change with j and i: never cached)
        if name == "zj":
            return self.z[self.j]
        if name == "lsmj":
            return self.z[self.j] - self.scalar("lse")
        if name == "smj":
            return mpmath.exp(self.z[self.j] - self.scalar("lse"))
        if name == "ind":
            return mpf(1) if self.j == self.y else mpf(0)
        if name == "qj":
            return self.q[self.j]
        if k == "batch" and name in ("s", "si"):
            return self.x[self.i]
        if k == "batch" and name in ("y", "yi"):
            return self.y[self.i]
        c = self.cache
        if name in c:
            return c[name]
        if name == "lse":
            zm = max(self.z)
            v = zm + mpmath.log(mpmath.fsum(mpmath.exp(t - zm) for t in self.z))
        elif name == "zy":
            v = self.z[self.y]
        elif name == "lsmy":  # -log(1 + sum_{j != y} exp(z_j - z_y)): exact even where p_t is 1 - 1e-8000
            zy = self.z[self.y]
            others = [t for j, t in enumerate(self.z) if j != self.y]
            top = max([mpf(0)] + [t - zy for t in others])
            v = -(top + mpmath.log(mpmath.exp(-top) + mpmath.fsum(mpmath.exp(t - zy - top) for t in others))) \
                if top > 0 else -mpmath.log1p(mpmath.fsum(mpmath.exp(t - zy) for t in others))
        elif name in ("pt", "smy"):
            v = mpmath.exp(self.scalar("lsmy"))
        elif name == "C":
            v = mpf(len(self.z))
        elif name in ("f", "yhat"):
            v = self.x
        elif name == "y":
            v = self.y
        elif name == "m":
            v = self.y * self.x
        elif name == "r":
            v = self.y - self.x
        elif name == "N":
            v = mpmath.fsum(self.params["__w"])
        else:
            raise ValueError(name)
        c[name] = v
        return v


def _softplus(x):
    return x + mpmath.log1p(mpmath.exp(-x)) if x > 0 else mpmath.log1p(mpmath.exp(x))


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


_MPFN = {"log": mpmath.log, "exp": mpmath.exp, "sqrt": mpmath.sqrt, "abs": abs, "log1p": mpmath.log1p,
         "expm1": mpmath.expm1, "softplus": _softplus, "sigmoid": _sigmoid, "tanh": mpmath.tanh,
         "sin": mpmath.sin, "cos": mpmath.cos, "atan": mpmath.atan, "acos": mpmath.acos, "sinh": mpmath.sinh,
         "cosh": mpmath.cosh, "lgamma": lambda x: mpmath.re(mpmath.loggamma(x)), "digamma": mpmath.digamma,
         "pos": lambda x: x if x > 0 else mpf(0)}
# patterns lossc documents as stabilised: their tiny arguments are not a sign of an unrepresentable loss
_STABLE_LOG_ARGS = ("pt", "smy", "smj")


def _is_stable_log_arg(node: Node) -> bool:
    if node.op == "in" and node.val in _STABLE_LOG_ARGS:
        return True
    if node.op == "fn" and node.val == "sigmoid":
        return True
    return node.op == "sub" and node.args[0] == ONE and node.args[1].op == "in" and node.args[1].val in ("pt", "smy")


def _exact(node: Node) -> bool:
    return (node.op == "num" and node.val in _DYADIC) or (node.op == "in" and node.val in _EXACT_LEAVES)


def ev(node: Node, env: Env):
    """The node's value at env (mpmath, 50 digits)."""
    return evx(node, env)[0]


def evx(node: Node, env: Env):
    """(value, error bound): the bound is a first-order running error analysis of the expression as written,
    in units of the unit roundoff (each operation's rounding, propagated by the operation's derivative);
    tolerances are a multiple of it."""
    v, e = _ev(node, env)
    if env.rec is not None:
        env.rec.see(v)
    return v, e


def _leaf_err(name: str, env: Env, v):
    if name in ("lse",):
        return max(abs(t) for t in env.z) + abs(v)
    if name in ("lsmy", "lsmj"):
        return max(abs(t) for t in env.z) * 2 + abs(v)
    if name in ("pt", "smy", "smj"):
        return abs(v) * (2 * max(abs(t) for t in env.z) + 1)
    if name == "r":
        return abs(v)
    if name in ("s", "si") and env.params.get("__from_logits"):  # s = sigmoid(logit), rounded: 1 - s near
        return abs(v)  # s = 1 keeps only the digits the rounding of s leaves (as any computation from s)
    return mpf(0)


def _root_err(b, p, eb, unit):
    """The bound (in units) of b^p, 0 < p < 1, for a base known within unit * eb: (|b| + d)^p - |b|^p over
    unit, d = unit * eb (sqrt(kl) at q = softmax(z): kl is 0, its rounding 1e-16, the root's 1e-8)."""
    d = unit * eb
    return ((abs(b) + d) ** p - abs(b) ** p) / unit


def _fn_deriv(name: str, x, v):
    if name == "log":
        return 1 / abs(x)
    if name == "exp":
        return v
    if name == "sqrt":
        return 1 / (2 * v) if v > 0 else mpf(0)
    if name in ("abs", "pos", "detach"):
        return mpf(1)
    if name == "log1p":
        return 1 / (1 + x)
    if name == "expm1":
        return mpmath.exp(x)
    if name == "softplus":
        return _sigmoid(x)
    if name == "sigmoid":
        return v * (1 - v)
    if name == "tanh":
        return 1 - v * v
    derivative = {"sin": mpmath.cos, "cos": lambda t: -mpmath.sin(t), "atan": lambda t: 1 / (1 + t * t),
                  # (acos of a tanh that rounds to +-1 at the working precision: a huge slope, not 1 / 0)
                  "acos": lambda t: -1 / mpmath.sqrt(max((1 - t) * (1 + t), mpf(10) ** -60)),
                  "sinh": mpmath.cosh, "cosh": mpmath.sinh,
                  "lgamma": mpmath.digamma, "digamma": lambda t: mpmath.psi(1, t)}.get(name)
    if derivative is not None:
        return derivative(x)
    raise ValueError(name)


def _ev(node: Node, env: Env):
    op, a, rec = node.op, node.args, env.rec
    if op == "num":
        v = mpf(node.val)
        return v, (mpf(0) if node.val in _DYADIC else abs(v))
    if op == "in":
        v = env.scalar(node.val)
        return v, _leaf_err(node.val, env, v)
    if op == "param":
        v = env.params[node.val]
        return v, abs(v)
    if op == "local":
        return env.locals[node.val]
    if op in ("vecy", "vecj"):
        v = env.params[node.val][env.y if op == "vecy" else env.j]
        return v, abs(v)
    if op == "sub" and a[0] == ONE and a[1].op == "in" and a[1].val in ("pt", "smy"):
        ev(a[1], env)  # (its magnitude recorded)
        v = -mpmath.expm1(env.scalar("lsmy"))  # 1 - p_t without cancellation
        return v, abs(v) + abs(env.scalar("pt")) * max(abs(t) for t in env.z)
    if op in ("add", "sub", "mul"):
        (x, ex), (y, ey) = evx(a[0], env), evx(a[1], env)
        v = x + y if op == "add" else x - y if op == "sub" else x * y
        e = ex + ey if op != "mul" else abs(y) * ex + abs(x) * ey
        return v, e + abs(v)
    if op == "div":
        (y, ey) = evx(a[1], env)
        if rec is not None:
            rec.sensitive(y)
        (x, ex) = evx(a[0], env)
        v = x / y
        return v, ex / abs(y) + abs(v) * ey / abs(y) + abs(v)
    if op == "neg":
        x, ex = evx(a[0], env)
        return -x, ex
    if op == "pow":
        if env.frozen and (node, env.i, env.j) in env.frozen:
            return env.frozen[(node, env.i, env.j)]
        (b, eb), (p, ep) = evx(a[0], env), evx(a[1], env)
        if rec is not None and b == 0 and p != int(p):
            rec.kink_atom(node, env, mpf(0), _root_err(b, p, eb, env.unit) if 0 < p < 1 else eb ** p if p > 1 else mpf(0))
        if rec is not None:
            if p < 0:
                rec.sensitive(b)
            if 0 < p < 1:  # an infinite derivative at b = 0
                rec.near(b, mpf(0), eb)
                if b == 0:  # the central difference there converges as h^p only (f * |f|^0.25 at f = 0)
                    rec.root_at_zero = min(rec.root_at_zero, float(p))
        if b == 0:
            # (a base exactly 0 known within its rounding eb: (0 + eb)^p, as below)
            return (mpf(1) if p == 0 else mpf(0)), (eb if p == 1 else _root_err(b, p, eb, env.unit) if 0 < p < 1
                                                   else eb ** p if p > 1 else mpf(0))
        if b < 0 and p != int(p):
            raise ValueError("negative base to a fractional power")
        v = b ** p
        first = abs(p * v / b) * eb + abs(v * mpmath.log(abs(b))) * ep + abs(v)
        if 0 < p < 1:  # (sqrt of a cancellation: its rounding's root, not p b^(p-1) e)
            return v, max(first, _root_err(b, p, eb, env.unit) + abs(v))
        if p > 1 and eb > abs(b):  # a base within its own rounding of 0: (b + e)^p, not p b^(p-1) e
            # (kl_div()^3 at q = softmax(z): kl is 1e-76, its rounding 1e-16, the cube's 1e-48)
            return v, max(first, (abs(b) + eb) ** p)
        return v, first
    if op == "fn":
        name = node.val
        if name == "detach":
            return evx(a[0], env.base if env.base is not None else env)
        if name in ("abs", "pos", "sqrt") and env.frozen and (node, env.i, env.j) in env.frozen:
            return env.frozen[(node, env.i, env.j)]
        x, ex = evx(a[0], env)
        if rec is not None:
            if name in ("abs", "pos", "sqrt"):
                rec.near(x, mpf(0), ex)
                if x == 0:
                    rec.kink_atom(node, env, mpf(0), ex if name != "sqrt" else _root_err(x, mpf(1) / 2, ex, env.unit))
            if name == "sqrt" and x == 0:  # (as b^p at b = 0: a central difference converges as h^(1/2))
                rec.root_at_zero = min(rec.root_at_zero, 0.5)
            elif name == "log" and not _is_stable_log_arg(a[0]):
                rec.sensitive(x)
        if (name == "log" and x <= 0) or (name == "sqrt" and x < 0) or (name == "acos" and abs(x) > 1) or (
                name in ("lgamma", "digamma") and x <= 0 and x == int(x)):  # (outside the domain: not real)
            raise ValueError(f"{name} of {x}")
        v = _MPFN[name](x)
        if name == "log" and _is_stable_log_arg(a[0]):  # computed stably: z_y - lse, -softplus(-x) ...
            return v, abs(v) + (max(abs(t) for t in env.z) if env.z else abs(v))
        if name == "sqrt":
            return v, max(abs(_fn_deriv(name, x, v)) * ex, _root_err(x, mpf(1) / 2, ex, env.unit)) + abs(v)
        return v, abs(_fn_deriv(name, x, v)) * ex + abs(v)
    if op in ("min2", "max2"):
        (x, ex), (y, ey) = evx(a[0], env), evx(a[1], env)
        if rec is not None and rec.near(x, y, ex, ey) == 0:
            rec.tie = True  # an exact tie: the backends split the gradient between both (as torch.minimum)
        first = (x <= y) if op == "min2" else (x >= y)
        return (x, ex) if first else (y, ey)
    if op == "clamp":
        (x, ex), (lo, elo), (hi, ehi) = (evx(t, env) for t in a)
        if rec is not None:
            rec.near(x, lo, ex, elo)
            rec.near(x, hi, ex, ehi)
        return (lo, elo) if x < lo else (hi, ehi) if x > hi else (x, ex)
    if op == "where":
        cond, yes, no = a
        (l, el), (r, er) = evx(cond.args[0], env), evx(cond.args[1], env)
        truth = {"<": l < r, "<=": l <= r, ">": l > r, ">=": l >= r}[cond.val]
        if rec is not None:
            rel = rec.near(l, r, el, er)
            if rel == 0:
                rec.tie = True
            if rec.flip and (0 < rel < rec.flip or (rel == 0 and not (_exact(cond.args[0]) and _exact(cond.args[1])))):
                truth = not truth
                rec.flipped = True
            try:  # the branch not taken: its magnitudes count too (a backend computes both)
                evx(no if truth else yes, env)
            except (ValueError, ZeroDivisionError):
                pass
        return evx(yes if truth else no, env)
    if op == "red":
        red, excl = node.val
        pairs = [evx(a[0], replace_env(env, j=j)) for j in range(len(env.z)) if not (excl and j == env.y)]
        vals = [p[0] for p in pairs]
        errs = [p[1] for p in pairs]
        if red in ("sum", "mean"):
            v = mpmath.fsum(vals)
            e = mpmath.fsum(errs) + len(vals) * max(abs(t) for t in vals) + abs(v)
            return (v, e) if red == "sum" else (v / len(vals), e / len(vals))
        if red in ("max", "min"):
            if rec is not None and len(vals) > 1:
                s = sorted(vals, reverse=(red == "max"))
                rec.near(s[0], s[1], max(errs), max(errs))
            i = vals.index(max(vals) if red == "max" else min(vals))
            return vals[i], errs[i]
        if red == "logsumexp":
            m = max(vals)
            v = m + mpmath.log(mpmath.fsum(mpmath.exp(t - m) for t in vals))
            return v, max(errs) + abs(v) + max(abs(t) for t in vals)
        raise ValueError(red)
    if op == "bred":
        w = env.params["__w"]
        pairs = [(w[i], evx(a[0], replace_env(env, i=i))) for i in range(len(env.x)) if w[i] != 0]
        total = mpmath.fsum(wi * p[0] for wi, p in pairs)
        e = mpmath.fsum(abs(wi) * (p[1] + abs(p[0])) for wi, p in pairs) * (1 + len(pairs)) + abs(total)
        if node.val == "sum":
            return total, e
        n = mpmath.fsum(w)
        return total / n, e / n + abs(total / n)
    if op == "lsmT":
        T, _ = evx(a[0], env)
        zs = [t / T for t in env.z]
        m = max(zs)
        v = zs[env.y] - m - mpmath.log(mpmath.fsum(mpmath.exp(t - m) for t in zs))
        return v, abs(v) + 3 * max(abs(t) for t in zs)
    if op == "call":
        return evx(expand_call(node), env)
    raise ValueError(op)


def replace_env(env: Env, **kw) -> Env:
    """env with another class j or element i (its detach base follows)."""
    new = copy.copy(env)
    for k, v in kw.items():
        setattr(new, k, v)
    if env.base is not None:
        new.base = replace_env(env.base, **kw)
    return new


# ---------------------------------------------------------------------------------------------------------
# catalog losses, written here by hand (the truth of a call)
# ---------------------------------------------------------------------------------------------------------

def _r():
    return leaf("r")


def _huber(delta):
    ar = fn("abs", _r())
    return where(ar, "<", delta, bin_("mul", num("0.5"), bin_("pow", _r(), num("2"))),
                 bin_("mul", delta, bin_("sub", ar, bin_("mul", num("0.5"), delta))))


def _pseudo_huber(delta):
    q = bin_("div", _r(), delta)
    return bin_("mul", bin_("pow", delta, num("2")),
                bin_("sub", fn("sqrt", bin_("add", ONE, bin_("pow", q, num("2")))), ONE))


def _quantile(tau):
    return Node("max2", (bin_("mul", tau, _r()), bin_("mul", bin_("sub", tau, ONE), _r())))


def _log_cosh():
    return bin_("sub", bin_("add", _r(), fn("softplus", bin_("mul", num("-2"), _r()))), fn("log", num("2")))


def _focal(gamma):
    pt = leaf("pt")
    return Node("neg", (bin_("mul", bin_("pow", bin_("sub", ONE, pt), gamma), fn("log", pt)),))


def _bce():
    f, y = leaf("f"), leaf("y")
    return bin_("sub", fn("softplus", f), bin_("mul", y, f))


def _sigmoid_focal(alpha, gamma):
    f, y = leaf("f"), leaf("y")
    one_minus_pt = bin_("add", bin_("mul", y, fn("sigmoid", Node("neg", (f,)))),
                        bin_("mul", bin_("sub", ONE, y), fn("sigmoid", f)))
    alpha_t = bin_("add", bin_("mul", alpha, y), bin_("mul", bin_("sub", ONE, alpha), bin_("sub", ONE, y)))
    return bin_("mul", bin_("mul", alpha_t, bin_("pow", one_minus_pt, gamma)), _bce())


def _smooth_hinge():
    m = leaf("m")
    return where(m, "<=", num("0"), bin_("sub", num("0.5"), m),
                 bin_("mul", num("0.5"), bin_("pow", fn("pos", bin_("sub", ONE, m)), num("2"))))


def _kl_div():
    body = bin_("sub", where(leaf("qj"), ">", num("0"), bin_("mul", leaf("qj"), fn("log", leaf("qj"))), num("0")),
                bin_("mul", leaf("qj"), leaf("lsmj")))
    return Node("red", (body,), ("sum", False))


def _soft_ce(eps):
    tq = bin_("add", bin_("mul", bin_("sub", ONE, eps), leaf("qj")), bin_("div", eps, leaf("C")))
    return Node("neg", (Node("red", (bin_("mul", tq, leaf("lsmj")),), ("sum", False)),))


def _anyloss_f1(L):
    def a():
        return fn("sigmoid", bin_("mul", L, bin_("sub", leaf("s"), num("0.5"))))
    tp = Node("bred", (bin_("mul", leaf("y"), a()),), "sum")
    fn_ = Node("bred", (bin_("mul", leaf("y"), bin_("sub", ONE, a())),), "sum")
    fp = Node("bred", (bin_("mul", bin_("sub", ONE, leaf("y")), a()),), "sum")
    two_tp = bin_("mul", num("2"), tp)
    return bin_("sub", ONE, bin_("div", two_tp, bin_("add", bin_("add", two_tp, fn_), fp)))


#: name -> (kind, [(param, default, allowed values)], builder from the bound argument nodes)
CALLS = {
    "huber": ("regression", [("delta", "1.0", ("0.5", "1.0", "2"))], _huber),
    "pseudo_huber": ("regression", [("delta", "1.0", ("0.5", "1.0", "2"))], _pseudo_huber),
    "quantile": ("regression", [("tau", "0.5", ("0.25", "0.5", "0.7"))], _quantile),
    "mse": ("regression", [], lambda: bin_("pow", _r(), num("2"))),
    "mae_regression": ("regression", [], lambda: fn("abs", _r())),
    "log_cosh": ("regression", [], _log_cosh),
    "focal": ("multiclass", [("gamma", "2.0", ("0", "0.5", "1.5", "2", "3"))], _focal),
    "cross_entropy": ("multiclass", [], lambda: Node("neg", (fn("log", leaf("pt")),))),
    "poly1": ("multiclass", [("eps", "1.0", ("0.5", "1.0", "2"))],
              lambda eps: bin_("add", Node("neg", (fn("log", leaf("pt")),)),
                               bin_("mul", eps, bin_("sub", ONE, leaf("pt"))))),
    "bce": ("binary", [], _bce),
    "sigmoid_focal": ("binary", [("alpha", "0.25", ("0.25", "0.5", "0.75")), ("gamma", "2.0", ("1", "2", "2.5"))],
                      _sigmoid_focal),
    "hinge": ("margin", [], lambda: fn("pos", bin_("sub", ONE, leaf("m")))),
    "squared_hinge": ("margin", [], lambda: bin_("pow", fn("pos", bin_("sub", ONE, leaf("m"))), num("2"))),
    "logistic": ("margin", [], lambda: fn("softplus", Node("neg", (leaf("m"),)))),
    "smooth_hinge": ("margin", [], _smooth_hinge),
    "kl_div": ("distribution", [], _kl_div),
    "soft_cross_entropy": ("distribution", [("eps", "0.0", ("0", "0.1", "0.5"))], _soft_ce),
    "anyloss_f1": ("batch", [("L", "73.0", ("5", "10", "20"))], _anyloss_f1),
}
_SOFTPLUS_CALLS = {"log_cosh", "bce", "sigmoid_focal", "logistic"}


def expand_call(node: Node) -> Node:
    """The called catalog loss's formula (this module's own) with the call's arguments bound."""
    name, keys = node.val
    _, spec, build = CALLS[name]
    bound = {p: num(d) for p, d, _ in spec}
    order = [p for p, _, _ in spec]
    for pos, (k, x) in enumerate(zip(keys, node.args)):
        bound[order[pos] if k is None else k] = x
    return build(*(bound[p] for p in order))


# ---------------------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    kind: str
    rng: random.Random
    avoid: frozenset
    params: list = field(default_factory=list)      # (name, 'any'|'exp'|'pos'|'vector', value)
    locals: list = field(default_factory=list)      # (name, Node, level, has_red)
    names: set = field(default_factory=set)
    features: set = field(default_factory=set)
    in_local: bool = False

    def fresh(self) -> str:
        bad = lambda n: (n in self.names or n in _RESERVED[self.kind] or n in _FUNCS or n in CALLS
                         or ("capture" in self.avoid and (n in CAPTURE_NAMES or re.fullmatch(r"[RAB]\d+", n))))
        pool = [n for n in _NAME_POOL if not bad(n)]
        if not pool or self.rng.random() < 0.15:
            name = self.rng.choice("abcdehpvwxAB") + str(self.rng.randrange(100))
            while bad(name):
                name += "x"
        else:
            name = self.rng.choice(pool)
        self.names.add(name)
        if name in CAPTURE_NAMES or re.fullmatch(r"[RAB]\d+", name):
            self.features.add("capture")
        return name

    def param(self, role: str) -> Node:
        """A scalar parameter: 'any' (a float), 'exp' (an exponent), 'pos' (a positive number)."""
        rng = self.rng
        for pname, prole, _ in self.params:
            if prole == role and rng.random() < 0.4:
                return Node("param", (), pname)
        name = self.fresh()
        if role == "exp":
            value = rng.choice((0.0, 0.5, 1.0, 2.0, 2.5, 1.5, 3.0))
        elif role == "pos":
            value = rng.choice((0.5, 1.0, 2.0, 0.37, 1.7, 4.0))
        else:
            value = rng.choice((-1.0, 0.0, 0.5, 1.0, 2.0, 0.37, -0.25))
        self.params.append((name, role, value))
        return Node("param", (), name)


def _lit(ctx: _Ctx, dyadic: bool = False) -> Node:
    return num(ctx.rng.choice(_DYADIC if dyadic else _LITERALS))


def _scalars(ctx: _Ctx, level: str) -> list[str]:
    k = ctx.kind
    if k == "multiclass":
        base = ["zy", "pt", "lse", "lsmy", "smy", "C"]
        return base + (["zj", "smj", "lsmj", "ind", "zj"] if level == "class" else [])
    if k == "distribution":
        return ["lse", "C"] + (["zj", "smj", "lsmj", "qj", "zj"] if level == "class" else [])
    if k == "binary":
        return ["f", "y", "f"]
    if k == "margin":
        return ["m", "f", "y", "m"]
    if k == "regression":
        return ["r", "yhat", "y", "r"]
    if k == "batch":
        return ["s", "si", "y", "yi", "s"] if level == "elem" else ["N"]
    raise ValueError(k)


def _atom(ctx: _Ctx, level: str) -> Node:
    """A leaf: a kind name, a literal, a parameter, a local, a class-vector parameter."""
    rng = ctx.rng
    r = rng.random()
    usable = [n for n, _, lv, has_red in ctx.locals
              if (lv == level and level != "class") or (level == "class" and lv == "row" and not has_red)]
    if usable and r < 0.25:
        return Node("local", (), rng.choice(usable))
    if r < 0.35:
        return _lit(ctx)
    if r < 0.45:
        return ctx.param("any")
    if ctx.kind == "multiclass" and level in ("row", "class") and r < 0.5:
        vec = next((p for p, role, _ in ctx.params if role == "vector"), None)
        if vec is None:
            vec = ctx.fresh()
            while vec in _ROW_ENTRIES:  # (q[C] would make q[j], the row form's own: refused)
                vec = ctx.fresh()
            ctx.params.append((vec, "vector", None))
        ctx.features.add("vector")
        return Node("vecj" if level == "class" else "vecy", (), vec)
    if level == "batch":
        return _batch_sum(ctx) if r < 0.8 else leaf("N")
    return leaf(rng.choice(_scalars(ctx, level)))


def _positive(ctx: _Ctx, level: str, depth: int) -> Node:
    """An expression > 0 and not tiny by construction (a safe log argument, denominator or base)."""
    rng = ctx.rng
    x = expr(ctx, level, depth - 1)
    c = rng.randrange(6)
    if c == 0:
        return bin_("add", ONE, bin_("pow", x, num("2")))
    if c == 1:
        return bin_("add", num(rng.choice(("1", "2", "0.5"))), fn("abs", x))
    if c == 2:
        return bin_("add", num("2"), fn("tanh", x))
    if c == 3:
        return bin_("add", ONE, fn("sigmoid", x))
    if c == 4 and "softplus" not in ctx.avoid:
        ctx.features.add("softplus")
        return bin_("add", ONE, fn("softplus", x))
    return fn("exp", fn("tanh", x))


def _nonneg(ctx: _Ctx, level: str, depth: int) -> Node:
    """An expression >= 0 that can reach 0 (a base for a fractional power: the b^g at b = 0 cases)."""
    rng = ctx.rng
    k = ctx.kind
    choices = ["pos", "abs", "sigmoid", "sq"]
    if k == "multiclass" and level in ("row", "class"):
        choices += ["1-pt", "pt"]
    if k in ("multiclass", "distribution") and level == "class":
        choices += ["smj"]
    if k == "batch" and level == "elem":
        choices += ["s", "1-s"]
    c = rng.choice(choices)
    if c == "1-pt":
        return bin_("sub", ONE, leaf("pt"))
    if c == "pt":
        return leaf("pt")
    if c == "smj":
        return leaf("smj")
    if c == "s":
        return leaf("s")
    if c == "1-s":
        return bin_("sub", ONE, leaf("s"))
    x = expr(ctx, level, depth - 1)
    if c == "pos":
        return fn("pos", x)
    if c == "abs":
        return fn("abs", x)
    if c == "sigmoid":
        return fn("sigmoid", x)
    return bin_("pow", x, num("2"))


def _bounded(ctx: _Ctx, level: str, depth: int) -> Node:
    """An expression <= a small bound (a safe exp/expm1 argument)."""
    rng = ctx.rng
    x = expr(ctx, level, depth - 1)
    c = rng.randrange(5)
    if c == 0:
        return Node("neg", (fn("abs", x),))
    if c == 1:
        return fn("tanh", x)
    if c == 2:
        return Node("neg", (fn("pos", x),))
    if c == 3:
        return Node("neg", (bin_("pow", x, num("2")),))
    if ctx.kind in ("multiclass", "distribution") and level == "class":
        return leaf("lsmj")
    return fn("sigmoid", x)


def _power(ctx: _Ctx, level: str, depth: int) -> Node:
    rng = ctx.rng
    c = rng.randrange(4)
    if c == 0:  # integer literal exponent: any base
        return bin_("pow", expr(ctx, level, depth - 1), num(rng.choice(("0", "1", "2", "3"))))
    if c == 1:  # negative exponent: a positive base
        e = rng.choice(("1", "0.5", "2", "1.5"))
        return bin_("pow", _positive(ctx, level, depth), Node("neg", (num(e),)))
    # fractional literal or parametric exponent
    e = ctx.param("exp") if c == 2 else num(rng.choice(("0.5", "1.5", "2.5", "0", "1", "0.25")))
    if "pow0" in ctx.avoid or rng.random() < 0.5:
        base = _positive(ctx, level, depth)
    else:
        base = _nonneg(ctx, level, depth)
        ctx.features.add("pow0")
    return bin_("pow", base, e)


def _where(ctx: _Ctx, level: str, depth: int) -> Node:
    rng = ctx.rng
    ctx.features.add("where")
    # a boundary on a kind name and a dyadic literal: exact ties are reachable from the inputs
    exact = [s for s in _scalars(ctx, level) if s in _EXACT_LEAVES and s not in ("ind", "C", "N")]
    if (rng.random() < 0.6 or "const_where" in ctx.avoid) and exact:
        lhs = leaf(rng.choice(exact))
        if rng.random() < 0.3:
            lhs = fn("abs", lhs)
        rhs = rng.choice((num("0"), num("0.5"), num("1"), Node("neg", (num("1"),)), num("2")))
    else:
        lhs, rhs = expr(ctx, level, depth - 1), (_lit(ctx, True) if rng.random() < 0.5 else ctx.param("any"))
    return Node("where", (Node("cmp", (lhs, rhs), rng.choice(("<", "<=", ">", ">="))),
                          expr(ctx, level, depth - 1), expr(ctx, level, depth - 1)))


def _reduction(ctx: _Ctx, depth: int) -> Node:
    rng = ctx.rng
    red = rng.choice(("sum", "sum", "mean", "max", "min", "logsumexp"))
    excl = ctx.kind == "multiclass" and rng.random() < 0.35
    ctx.features.add("reduction")
    return Node("red", (expr(ctx, "class", depth - 1),), (red, excl))


def _batch_sum(ctx: _Ctx) -> Node:
    ctx.features.add("batch_sum")
    return Node("bred", (expr(ctx, "elem", 2),), ctx.rng.choice(("sum", "sum", "mean")))


def _call(ctx: _Ctx) -> Node | None:
    rng = ctx.rng
    names = [n for n, (k, _, _) in CALLS.items() if k == ctx.kind
             and not ("softplus" in ctx.avoid and n in _SOFTPLUS_CALLS)]
    if not names:
        return None
    name = rng.choice(names)
    _, spec, _ = CALLS[name]
    keys, args = [], []
    keyword = False
    for pname, _, allowed in spec:
        if rng.random() < 0.3:
            if keyword or rng.random() < 0.5:
                break  # the rest take their defaults
            keyword = True
            continue  # this one takes its default: the following ones must be keywords
        keyword = keyword or rng.random() < 0.5 or ("positional2" in ctx.avoid and len(keys) >= 1)
        if not keyword and len(keys) >= 1:
            ctx.features.add("positional2")
        keys.append(pname if keyword else None)
        args.append(num(rng.choice(allowed)))
    ctx.features.add("call")
    if name in _SOFTPLUS_CALLS:
        ctx.features.add("softplus")
    return Node("call", tuple(args), (name, tuple(keys)))


def expr(ctx: _Ctx, level: str, depth: int) -> Node:
    """A random expression of the given level: 'row' (a row's or element's scalar), 'class' (inside a class
    reduction), 'elem' (inside a batch sum), 'batch' (a batch loss's outer expression)."""
    rng = ctx.rng
    if depth <= 0:
        return _atom(ctx, level)
    c = rng.random()
    if c < 0.18:
        return _atom(ctx, level)
    if c < 0.40:
        op = rng.choice(("add", "add", "sub", "mul", "mul"))
        return bin_(op, expr(ctx, level, depth - 1), expr(ctx, level, depth - 1))
    if c < 0.45:
        return bin_("div", expr(ctx, level, depth - 1), _positive(ctx, level, depth))
    if c < 0.48:
        return Node("neg", (expr(ctx, level, depth - 1),))
    if c < 0.56:
        return _power(ctx, level, depth)
    if c < 0.70:
        name = rng.choice(("log", "exp", "sqrt", "abs", "log1p", "expm1", "softplus", "sigmoid", "tanh", "pos",
                           "detach", "sqrtpos", "trig", "gamma"))
        if name == "trig":  # (the functions of the literature's angular margins and robust losses)
            name = rng.choice(("sin", "cos", "atan", "acos", "sinh", "cosh"))
            if name == "acos":  # (its domain [-1, 1])
                return fn("acos", fn("tanh", expr(ctx, level, depth - 1)))
            if name in ("sinh", "cosh"):
                return fn(name, _bounded(ctx, level, depth))
            return fn(name, expr(ctx, level, depth - 1))
        if name == "gamma":  # (Student-t and Dirichlet likelihoods; positive arguments)
            return fn(rng.choice(("lgamma", "digamma")), _positive(ctx, level, depth))
        if name == "softplus" and "softplus" in ctx.avoid:
            name = "tanh"
        if name == "softplus":
            ctx.features.add("softplus")
        if name in ("exp", "expm1") and level == "elem":
            if "batch_exp" in ctx.avoid:
                name = "sigmoid"
            else:
                ctx.features.add("batch_exp")
        if name == "detach":
            ctx.features.add("detach")
        if name == "log":
            if ctx.kind == "multiclass" and level in ("row", "class") and rng.random() < 0.4:
                return fn("log", rng.choice((leaf("pt"), bin_("sub", ONE, leaf("pt")))
                                            if level == "row" else (leaf("pt"), leaf("smj"))))
            return fn("log", _positive(ctx, level, depth))
        if name == "sqrt":
            return fn("sqrt", _positive(ctx, level, depth))
        if name == "sqrtpos":
            if "pow0" in ctx.avoid:
                return fn("sqrt", _positive(ctx, level, depth))
            ctx.features.add("pow0")
            return fn("sqrt", _nonneg(ctx, level, depth))
        if name == "log1p":
            return fn("log1p", rng.choice((_nonneg, _positive))(ctx, level, depth))
        if name in ("exp", "expm1"):
            return fn(name, _bounded(ctx, level, depth))
        return fn(name, expr(ctx, level, depth - 1))
    if c < 0.76:
        return Node(rng.choice(("min2", "max2")), (expr(ctx, level, depth - 1), expr(ctx, level, depth - 1)))
    if c < 0.79:
        lo = rng.choice(("-1", "0", "0.5"))
        lo_node = num(lo) if not lo.startswith("-") else Node("neg", (num(lo[1:]),))
        return Node("clamp", (expr(ctx, level, depth - 1), lo_node, num(rng.choice(("1", "2", "3")))))
    if c < 0.87:
        return _where(ctx, level, depth)
    if c < 0.94 and level == "row" and ctx.kind in ("multiclass", "distribution"):
        if ctx.kind == "multiclass" and rng.random() < 0.15:
            return Node("lsmT", (ctx.param("pos"),))
        return _reduction(ctx, depth)
    if level in ("row", "batch"):
        call = _call(ctx)
        if call is not None:
            return call
    return _atom(ctx, level)


def generate(kind: str, rng: random.Random, avoid=()) -> GeneratedLoss:
    """A random well-formed loss of ``kind``; ``avoid`` a subset of ``AVOIDABLE``."""
    if kind not in KINDS:
        raise ValueError(kind)
    ctx = _Ctx(kind=kind, rng=rng, avoid=frozenset(avoid))
    top = "batch" if kind == "batch" else "row"
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        level = top if kind != "batch" or rng.random() < 0.5 else "elem"
        ctx.in_local = True
        e = expr(ctx, level, rng.choice((1, 2, 3)))
        ctx.in_local = False
        name = ctx.fresh()
        # (a local reading another that holds a class reduction holds one too: docs/language.md, class
        # reductions of the inputs may not nest, so neither may be used inside a class reduction)
        reads_red = any(hr for n, _, _, hr in ctx.locals if _uses_name(n, e))
        ctx.locals.append((name, e, level, _has_red(e) or reads_red))
    ret = expr(ctx, top, rng.choice((2, 3, 3, 4)))
    if ret.op in ("num", "in", "param", "local", "vecy") or rng.random() < 0.3:  # never a bare name
        ret = bin_(rng.choice(("add", "mul", "sub")), ret, expr(ctx, top, 3))
    if kind == "batch" and not _has(ret, "bred"):
        ret = bin_("add", ret, _batch_sum(ctx))
    params = tuple((p, "vector", None) if role == "vector" else (p, "scalar", value) for p, role, value in ctx.params)
    loss = GeneratedLoss(kind=kind, name="g" + str(rng.randrange(10 ** 6)), params=params,
                         locals=tuple((n, e) for n, e, _, _ in ctx.locals), ret=ret,
                         features=frozenset(ctx.features))
    loss = _prune(loss) if rng.random() < 0.7 else loss
    loss = replace(loss, features=features(loss))
    bad = loss.features & ctx.avoid
    if bad:  # a construct to avoid slipped in (a where on a local holding constants ...): draw again
        return generate(kind, rng, avoid)
    return loss


def _has(node: Node, op: str) -> bool:
    return node.op == op or any(_has(a, op) for a in node.args) or (
        node.op == "call" and op in ("bred", "red") and _has(expand_call(node), op))


def _has_red(node: Node) -> bool:
    return _has(node, "red") or _has(node, "lsmT")


def _uses_name(name: str, node: Node) -> bool:
    return ((node.op in ("local", "param", "vecy", "vecj") and node.val == name)
            or any(_uses_name(name, a) for a in node.args))


# ---------------------------------------------------------------------------------------------------------
# the truth of one row / element / batch
# ---------------------------------------------------------------------------------------------------------

@dataclass
class RowTruth:
    value: object           # mpf
    grad: list              # mpf per input component (a row's C logits; 1 for an element; N for a batch)
    kinked: list            # per component: the one-sided derivatives differ (a kink exactly here)
    kink: float             # smallest nonzero relative distance to a non-smooth point (0 < kink: near it)
    scale: float            # largest |intermediate| (also of where branches not taken)
    tiny: float             # smallest sensitive intermediate (a log argument, denominator, negative-power base)
    err: float = 0.0        # running error bound of the value, in unit roundoffs
    grad_err: list = field(default_factory=list)  # per component: d(err)/dx, the gradient's error scale
    grad_noise: list = field(default_factory=list)  # per component: the truth's own absolute uncertainty
    tie: bool = False       # a where condition or a min/max exactly on its boundary
    #: per component: the convention gradient (abs, pos, roots exactly at their kink frozen: derivative 0
    #: there, docs/semantics.md), or None where no such atom sits at its kink
    grad_conv: list | None = None
    #: per component: the bound (unit roundoffs) on eager autograd's own error (``rev_bound``)
    grad_rev: list = field(default_factory=list)


def _env(loss: GeneratedLoss, inputs: dict, unit: float = 1e-10) -> Env:
    params = {}
    for pname, ptype, value in loss.params:
        given = inputs.get("params", {}).get(pname, value)
        params[pname] = [mpf(v) for v in given] if ptype == "vector" else mpf(given)
    k = loss.kind
    env = Env(kind=k, params=params, unit=mpf(unit))
    if k in ("multiclass", "distribution"):
        env.z = [mpf(v) for v in inputs["z"]]
        if k == "multiclass":
            env.y = int(inputs["y"])
        else:
            env.q = [mpf(v) for v in inputs["q"]]
    elif k == "batch":
        env.x = [mpf(v) for v in inputs["s"]]
        env.y = [mpf(v) for v in inputs["y"]]
        params["__w"] = [mpf(v) for v in inputs["w"]]
        params["__from_logits"] = bool(inputs.get("from_logits"))
    else:
        env.x = mpf(inputs["x"])
        env.y = mpf(inputs["y"])
    return env


def _eval_loss(loss: GeneratedLoss, env: Env):
    env.locals = {}
    for lname, e in loss.locals:
        env.locals[lname] = evx(e, env)
    return evx(loss.ret, env)


def _is_elem_local(loss: GeneratedLoss, lname: str) -> bool:
    return any(n == lname and _has_elem_leaf(e, loss) for n, e in loss.locals)


def _has_elem_leaf(node: Node, loss: GeneratedLoss) -> bool:
    if node.op == "in" and node.val in ("s", "si", "y", "yi"):
        return True
    if node.op == "local":
        return _is_elem_local(loss, node.val)
    return node.op != "bred" and any(_has_elem_leaf(a, loss) for a in node.args)


def _inline_elem_locals(loss: GeneratedLoss) -> GeneratedLoss:
    """Batch kind: element-level locals substituted into the sums that use them (their value differs per
    element), so the evaluator sees one expression per sum."""
    if loss.kind != "batch":
        return loss
    elem = {n: e for n, e in loss.locals if _is_elem_local(loss, n)}
    if not elem:
        return loss

    def sub(node: Node) -> Node:
        if node.op == "local" and node.val in elem:
            return sub(elem[node.val])
        return Node(node.op, tuple(sub(a) for a in node.args), node.val) if node.args else node
    return replace(loss, locals=tuple((n, sub(e)) for n, e in loss.locals if n not in elem), ret=sub(loss.ret))


def _inputs_vector(loss: GeneratedLoss, inputs: dict) -> tuple[str, list]:
    k = loss.kind
    if k in ("multiclass", "distribution"):
        return "z", list(inputs["z"])
    if k == "batch":
        return "s", list(inputs["s"])
    return "x", [inputs["x"]]


def _with_component(inputs: dict, key: str, values: list, idx: int, value) -> dict:
    new = dict(inputs)
    vals = list(values)
    vals[idx] = value
    new[key] = vals if key != "x" else vals[0]
    return new


def row_truth(loss: GeneratedLoss, inputs: dict, flip: float = 0.0, grad: bool = True,
              underflow: float = 1e-300, unit: float = 1e-10, roundoff: float = 2.0 ** -53) -> "RowTruth":
    """Value and gradient of one row/element/batch at ``inputs`` (floats; see ``_env``). With ``flip`` > 0
    the where-conditions within that relative distance of their boundary take the other branch; two
    operands closer than ``underflow`` (absolute: beyond the dtype's range, 1e-4000 against 0) are within
    rounding of each other; ``unit`` is the comparison's relative error per unit of the bound. For the
    batch kind with ``inputs['from_logits']`` the gradient is with respect to the logits."""
    loss = _inline_elem_locals(loss)
    with mpmath.workdps(75):  # 50 digits for the value, 25 more for the central differences' cancellation
        from_logits = loss.kind == "batch" and inputs.get("from_logits")
        if from_logits:
            logits = [mpf(v) for v in inputs["s"]]
            inputs = dict(inputs, s=[_sigmoid(v) for v in logits])
        env = _env(loss, inputs, unit)
        env.rec = _Rec(flip, underflow)
        value, err = _eval_loss(loss, env)
        rec = env.rec
        grads, kinked, gerrs, noise = [], [], [], []
        if grad:
            key, vals = _inputs_vector(loss, inputs)
            if from_logits:
                vals = logits
            base_locals = _base_locals(loss, inputs)
            for idx, v in enumerate(vals):
                v = mpf(v)
                h = mpf("1e-34") * max(mpf(1), abs(v))  # O(h) = 1e-30 truncation even at a C1 kink
                sides = []
                for sgn in (1, -1):
                    pv = v + sgn * h
                    if from_logits:
                        ins = _with_component(inputs, key, inputs["s"], idx, _sigmoid(pv))
                    else:
                        ins = _with_component(inputs, key, vals, idx, pv)
                    pe = _env(loss, ins, unit)
                    pe.base = _env(loss, inputs, unit)  # detach(x) reads x at the unperturbed point
                    pe.base.locals = base_locals
                    if flip:
                        pe.rec = _Rec(flip, underflow)
                    try:
                        sides.append(_eval_loss(loss, pe))
                    except (ValueError, ZeroDivisionError):  # a step outside the domain (s = 1 + h in (1 - s)^g)
                        sides.append(None)
                if None in sides:  # at the domain's edge: a one-sided derivative, not compared
                    one = next(x for x in sides if x is not None) if sides != [None, None] else (value, err)
                    grads.append(mpf(0) * one[0])
                    gerrs.append(mpf(0))
                    noise.append(0.0)
                    kinked.append(True)
                    continue
                (vp, ep), (vm, em) = sides
                right, left = (vp - value) / h, (value - vm) / h
                central = (vp - vm) / (2 * h)
                grads.append(central)
                gerrs.append(max(abs(ep - err), abs(em - err)) / h)  # (one-sided: the bound |z_y| E has
                # slope E on both sides of z_y = 0, where its central difference is 0)
                # the central difference's own noise at 50 digits (a component far below the value's scale)
                noise.append(float(mpf("1e-70") * (abs(vp) + abs(vm) + err) / h))
                if abs(central) < mpf("1e-12") * (1 + abs(value)):  # a derivative near 0: its truncation,
                    # O(h f'') past a jump of f'' (y r |r| at r = 0: y h), is told by the difference at 2h
                    wide = _central(loss, inputs, key, vals, idx, v, 2 * h, from_logits, base_locals, unit)
                    if wide is not None:
                        noise[-1] += float(abs(wide - central))
                kinked.append(bool(abs(right - left) > mpf("1e-12") * (abs(right) + abs(left)) + mpf("1e-40")))
        conv, rev = None, []
        if grad:
            renv = _env(loss, inputs, unit)
            renv.roundoff = mpf(roundoff)
            renv.base = _env(loss, inputs, unit)
            renv.base.locals = base_locals
            with mpmath.workdps(20):  # (a bound: magnitudes, not digits)
                rev = [float(g) for g in rev_bound(loss, renv, len(vals))]
        if grad and rec.at_kink:
            conv = [_central(loss, inputs, key, vals, idx, mpf(v), mpf("1e-34") * max(mpf(1), abs(mpf(v))),
                             from_logits, base_locals, unit, frozen=rec.at_kink) for idx, v in enumerate(vals)]
        if rec.root_at_zero < 1 and grads:  # b^p (0 < p < 1) at b = 0: a central difference has an error
            # of order h^p there (h^0.25 = 3e-9 for f * |f|^0.25 at f = 0, whose derivative is 0)
            gmax = max(abs(g) for g in grads)
            noise = [n + 10 * float(mpf("1e-34") * max(mpf(1), abs(mpf(v)))) ** rec.root_at_zero
                     * (1 + abs(float(value)) + float(gmax)) for n, v in zip(noise, vals)]
        if rec.tie:  # on a where boundary the backends take the chosen branch's derivative, which the
            kinked = [True] * len(kinked)  # function's own (a constant around a point value) need not be
        near = rec.kink if rec.kink > 0 else math.inf
        return RowTruth(value=value, grad=grads, kinked=kinked, kink=near, scale=float(rec.big),
                        tiny=float(rec.tiny), err=float(err), grad_err=[float(g) for g in gerrs],
                        grad_noise=noise, tie=rec.tie, grad_conv=conv, grad_rev=rev)


def _central(loss, inputs, key, vals, idx, v, h, from_logits, base_locals, unit, frozen=None):
    """The central difference of component idx with step h (None outside the domain); ``frozen``: atoms
    that read their base value (the convention gradient)."""
    sides = []
    for sgn in (1, -1):
        pv = v + sgn * h
        ins = (_with_component(inputs, key, inputs["s"], idx, _sigmoid(pv)) if from_logits
               else _with_component(inputs, key, vals, idx, pv))
        pe = _env(loss, ins, unit)
        pe.base = _env(loss, inputs, unit)
        pe.base.locals = base_locals
        pe.frozen = frozen
        try:
            sides.append(_eval_loss(loss, pe)[0])
        except (ValueError, ZeroDivisionError):
            return None
    return (sides[0] - sides[1]) / (2 * h)


def _base_locals(loss: GeneratedLoss, inputs: dict) -> dict:
    env = _env(loss, inputs)
    _eval_loss(loss, env)
    return env.locals


# ---------------------------------------------------------------------------------------------------------
# JSON and shrinking
# ---------------------------------------------------------------------------------------------------------

def to_json(node: Node):
    val = node.val
    if isinstance(val, tuple):
        val = [list(v) if isinstance(v, tuple) else v for v in val]
    return [node.op, [to_json(a) for a in node.args], val]


def from_json(obj) -> Node:
    op, args, val = obj
    if isinstance(val, list):
        val = tuple(tuple(v) if isinstance(v, list) else v for v in val)
    return Node(op, tuple(from_json(a) for a in args), val)


def loss_to_json(loss: GeneratedLoss) -> dict:
    return {"kind": loss.kind, "name": loss.name,
            "params": [[p, t, list(v) if isinstance(v, (list, tuple)) else v] for p, t, v in loss.params],
            "locals": [[n, to_json(e)] for n, e in loss.locals], "ret": to_json(loss.ret),
            "features": sorted(loss.features)}


def loss_from_json(obj: dict) -> GeneratedLoss:
    return GeneratedLoss(kind=obj["kind"], name=obj["name"],
                         params=tuple((p, t, tuple(v) if isinstance(v, list) else v) for p, t, v in obj["params"]),
                         locals=tuple((n, from_json(e)) for n, e in obj["locals"]), ret=from_json(obj["ret"]),
                         features=frozenset(obj.get("features", ())))


def _subtrees(node: Node, level_ok) -> list:
    """Replacements for node: each child (when it is a plain expression), and simple constants."""
    out = []
    for a in node.args:
        if a.op not in ("cmp",) and node.op not in ("red", "bred", "call", "lsmT"):
            out.append(a)
    if node.op == "where":
        out = [node.args[1], node.args[2]]
    if node.op not in ("num",):
        out += [num("1"), num("0")]
    return out


def _replace_at(node: Node, path: tuple, new: Node) -> Node:
    if not path:
        return new
    i = path[0]
    args = list(node.args)
    args[i] = _replace_at(args[i], path[1:], new)
    return Node(node.op, tuple(args), node.val)


def _paths(node: Node, path=()):
    yield path, node
    for i, a in enumerate(node.args):
        yield from _paths(a, path + (i,))


def shrink_candidates(loss: GeneratedLoss):
    """Smaller variants: a local dropped (inlined), a subtree replaced by a child or a constant, an unused
    parameter dropped."""
    # inline a local
    for idx, (lname, e) in enumerate(loss.locals):
        def sub(node, lname=lname, e=e):
            if node.op == "local" and node.val == lname:
                return e
            return Node(node.op, tuple(sub(a) for a in node.args), node.val) if node.args else node
        rest = tuple((n, sub(x)) for n, x in loss.locals if n != lname)
        yield _prune(replace(loss, locals=rest, ret=sub(loss.ret)))
    # simplify the return expression and the locals
    targets = [("ret", None, loss.ret)] + [("local", i, e) for i, (_, e) in enumerate(loss.locals)]
    for where_, idx, root in targets:
        for path, node in sorted(_paths(root), key=lambda pn: len(pn[0])):
            if node.op == "cmp":
                continue
            for new in _subtrees(node, None):
                if new == node:
                    continue
                new_root = _replace_at(root, path, new)
                if where_ == "ret":
                    cand = replace(loss, ret=new_root)
                else:
                    locs = list(loss.locals)
                    locs[idx] = (locs[idx][0], new_root)
                    cand = replace(loss, locals=tuple(locs))
                yield _prune(cand)


def _prune(loss: GeneratedLoss) -> GeneratedLoss:
    """Drop the parameters and locals nothing uses any more."""
    used = lambda n: _uses_name(n, loss.ret) or any(_uses_name(n, e) for _, e in loss.locals)
    locals_ = tuple((n, e) for n, e in loss.locals if used(n))
    loss = replace(loss, locals=locals_)
    loss = replace(loss, params=tuple(p for p in loss.params if used(p[0])))
    return replace(loss, features=features(loss))


def size(loss: GeneratedLoss) -> int:
    count = lambda n: 1 + sum(count(a) for a in n.args)
    return count(loss.ret) + sum(count(e) + 1 for _, e in loss.locals) + len(loss.params)


# ---------------------------------------------------------------------------------------------------------
# features of a loss, read from its AST (they follow the shrinker)
# ---------------------------------------------------------------------------------------------------------

_INPUT_LEAVES = {"zy", "pt", "lse", "lsmy", "smy", "f", "y", "m", "r", "yhat", "zj", "smj", "lsmj", "ind", "qj",
                 "s", "si", "yi"}


def _reads_input(node: Node, loss: GeneratedLoss) -> bool:
    if node.op == "in" and node.val in _INPUT_LEAVES:
        return True
    if node.op in ("call", "lsmT"):
        return True
    if node.op in ("red", "bred"):
        return _reads_input(node.args[0], loss)
    if node.op == "local":
        e = dict(loss.locals).get(node.val)
        return e is not None and _reads_input(e, loss)
    return any(_reads_input(a, loss) for a in node.args)


def _can_be_zero(node: Node) -> bool:
    """A base built by _nonneg (pos, abs, sigmoid, a square, 1 - p_t, p_t, softmax, s, 1 - s)."""
    if node.op == "fn" and node.val in ("pos", "abs", "sigmoid"):
        return True
    if node.op == "in" and node.val in ("pt", "smj", "s", "smy"):
        return True
    if node.op == "sub" and node.args[0] == ONE and node.args[1].op == "in":
        return True
    return node.op == "pow" and node.args[1] == num("2")


def _negative(node: Node) -> bool:
    return node.op == "neg" or (node.op == "num" and node.val.startswith("-")) or node.op == "param"


def features(loss: GeneratedLoss) -> frozenset:
    """The constructs of known defects a loss contains (see AVOIDABLE), and a few others."""
    out = set()
    names = [p for p, _, _ in loss.params] + [n for n, _ in loss.locals]
    if any(n in CAPTURE_NAMES or re.fullmatch(r"[RAB]\d+", n) for n in names):
        out.add("capture")
    roots = [loss.ret] + [e for _, e in loss.locals]
    for root in roots:
        for _, node in _paths(root):
            if node.op == "pow" and _can_be_zero(node.args[0]) and not (
                    node.args[1].op == "num" and node.args[1].val in ("1", "2", "3")):
                out.add("pow0")
            if node.op == "fn" and node.val == "sqrt" and _can_be_zero(node.args[0]):
                out.add("pow0")
            if node.op == "fn" and node.val == "softplus":
                out.add("softplus")
            if node.op == "call":
                if node.val[0] in _SOFTPLUS_CALLS:
                    out.add("softplus")
                if sum(1 for k in node.val[1] if k is None) >= 2:
                    out.add("positional2")
                if node.val[0] == "anyloss_f1":
                    out.add("batch_exp")  # its sigmoid(L * (s - 0.5)) is the triton batch kernel's case
            if node.op == "bred" and any(n.op == "fn" and n.val in ("exp", "expm1", "sigmoid")
                                         for _, n in _paths(node)):
                out.add("batch_exp")
            if loss.kind == "batch" and (node.op == "div" or (node.op == "pow" and _negative(node.args[1]))):
                out.add("batch_exp")
            if node.op == "where" and not _reads_input(node.args[0], loss):
                out.add("const_where")
            if node.op == "where" and any(n.op in ("where", "min2", "max2", "clamp") and
                                          any(not _reads_input(b, loss) for b in n.args[1:] if b.op != "cmp")
                                          for _, n in _paths(node.args[0])):
                out.add("const_where")  # a branch of parameters alone inside a condition: the same relational
            if node.op == "fn" and node.val == "detach":
                out.add("detach")
    return frozenset(out)


# ---------------------------------------------------------------------------------------------------------
# the reverse-mode error bound (the reference backend: eager autograd of the loss as written)
# ---------------------------------------------------------------------------------------------------------

#: a local derivative's own absolute error, in units of |its operand's tangent|: torch's backward of tanh is
#: 1 - t^2 and of sigmoid s (1 - s), whose rounding is absolute (t^2, s^2 units) however small the result
def _fn_local(name: str, x, v, roundoff):
    """(|local derivative|, its relative error in units, its absolute error in units); ``roundoff``: the
    dtype's unit roundoff u. The rounding of t = tanh (or sigmoid, or expm1 near -1) is at most u |t| and at
    most its distance to the representable 1 (-1): where tanh saturates to exactly 1, 1 - t^2 is 0, off by
    the true derivative only, 2 (1 - |t|), not an ulp of 1."""
    d = abs(_fn_deriv(name, x, v)) if x != 0 or name not in ("abs", "pos") else mpf(0)
    if name == "pos" and x < 0:
        d = mpf(0)
    if name == "sqrt" and v == 0:
        d = mpf(0)
    gap = 1 - abs(v)
    off = min(abs(v), gap / roundoff)  # |t - fl(t)| in units
    if name == "tanh":
        return d, mpf(1), 2 * off * abs(v) + (v * v if gap >= roundoff / 2 else 0)
    if name == "sigmoid":
        return d, mpf(2), off * abs(v)
    if name == "expm1":
        return d, mpf(1), min(abs(v), (1 + v) / roundoff) if v < 0 else abs(v)
    if name == "log1p":
        return d, 1 + abs(x) / abs(1 + x), mpf(0)
    return d, mpf(2), mpf(0)


def _tv(n: int):
    return [mpf(0)] * n


def _lin(terms, n: int):
    """sum_k c_k T_k for (c_k, T_k) pairs."""
    out = _tv(n)
    for c, t in terms:
        if c:
            out = [o + c * u for o, u in zip(out, t)]
    return out


def _rev_leaf(name: str, env: Env, n: int):
    """(T, G) of a kind leaf: the sum over autograd's paths of |product of local derivatives| per input
    component, and the error bound (units) of autograd's computation of it."""
    z = env.z
    if name in ("zj", "zy"):
        t = _tv(n)
        t[env.j if name == "zj" else env.y] = mpf(1)
        return t, _tv(n)
    if name in ("lse", "lsmj", "lsmy", "smj", "pt", "smy"):
        sm = env.cache.get("__softmax")
        if sm is None:  # (the cache is shared by the per-class copies of env)
            lse = env.scalar("lse")
            sm = env.cache["__softmax"] = [mpmath.exp(u - lse) for u in z]
        if name == "lse":
            return sm, [2 * s for s in sm]
        k = env.j if name in ("lsmj", "smj") else env.y
        t = [s + (1 if i == k else 0) for i, s in enumerate(sm)]
        if name in ("smj", "pt", "smy"):
            p = sm[k]
            t = [p * u for u in t]
        return t, [3 * u for u in t]
    if name in ("f", "yhat", "r"):
        return [mpf(1)], _tv(1)
    if name == "m":
        return [abs(env.y)], [abs(env.y)]
    if env.kind == "batch" and name in ("s", "si"):
        t = _tv(n)
        if env.params.get("__from_logits"):  # s = sigmoid(logit): its backward s (1 - s) as torch computes it
            s = env.x[env.i]
            t[env.i] = s * (1 - s)
            g = _tv(n)
            g[env.i] = 2 * t[env.i] + s * s
            return t, g
        t[env.i] = mpf(1)
        return t, _tv(n)
    return _tv(n), _tv(n)


def rev_eval(node: Node, env: Env, n: int):
    """(value, T, G) of node: T[k] the sum over the reverse-mode paths from node to input component k of
    |the product of the local derivatives|, G[k] a first-order bound, in unit roundoffs, on the error of
    autograd summing those path products (each local derivative's relative and absolute rounding, each
    product and each accumulation). This is what eager autograd's error depends on and the forward bound's
    derivative does not see: two paths of 3e6 that cancel to 1 (f + hinge^2 (m + f)) leave an error of
    3e6 ulps."""
    op, a = node.op, node.args
    if op == "num":
        return mpf(node.val), _tv(n), _tv(n)
    if op == "in":
        v = env.scalar(node.val)
        return (v, *_rev_leaf(node.val, env, n))
    if op == "param":
        return env.params[node.val], _tv(n), _tv(n)
    if op in ("vecy", "vecj"):
        return env.params[node.val][env.y if op == "vecy" else env.j], _tv(n), _tv(n)
    if op == "local":
        return env.locals[node.val]
    if op == "sub" and a[0] == ONE and a[1].op == "in" and a[1].val in ("pt", "smy"):
        v = -mpmath.expm1(env.scalar("lsmy"))
        t, g = _rev_leaf("pt", env, n)
        return v, t, g
    if op in ("add", "sub", "mul", "div", "min2", "max2"):
        (x, tx, gx), (y, ty, gy) = rev_eval(a[0], env, n), rev_eval(a[1], env, n)
        if op in ("min2", "max2"):
            first = (x <= y) if op == "min2" else (x >= y)
            return (x, tx, gx) if first else (y, ty, gy)
        if op in ("add", "sub"):
            v, cx, cy, r = (x + y if op == "add" else x - y), mpf(1), mpf(1), 1
        elif op == "mul":
            v, cx, cy, r = x * y, abs(y), abs(x), 2
        else:
            v = x / y
            v, cx, cy, r = v, 1 / abs(y), abs(v / y), 3
        t = _lin(((cx, tx), (cy, ty)), n)
        g = _lin(((cx, gx), (cy, gy), (mpf(r), _lin(((cx, tx), (cy, ty)), n))), n)
        return v, t, g
    if op == "neg":
        x, tx, gx = rev_eval(a[0], env, n)
        return -x, tx, gx
    if op == "pow":
        (b, tb, gb), (p, tp, gp) = rev_eval(a[0], env, n), rev_eval(a[1], env, n)
        if b == 0:
            v = mpf(1) if p == 0 else mpf(0)
            cb = abs(p) if p == 1 else mpf(0)
            return v, _lin(((cb, tb),), n), _lin(((cb, gb),), n)
        v = b ** p
        cb, cp = abs(p * v / b), abs(v * mpmath.log(abs(b)))
        t = _lin(((cb, tb), (cp, tp)), n)
        return v, t, _lin(((cb, gb), (cp, gp), (mpf(4), t)), n)
    if op == "fn":
        name = node.val
        if name == "detach":
            base = env.base if env.base is not None else env
            return ev(a[0], base), _tv(n), _tv(n)
        x, tx, gx = rev_eval(a[0], env, n)
        v = _MPFN[name](x)
        d, rho, delta = _fn_local(name, x, v, env.roundoff)
        return v, _lin(((d, tx),), n), _lin(((d, gx), (d * (rho + 1) + delta, tx)), n)
    if op == "clamp":
        (x, tx, gx), (lo, tl, gl), (hi, th, gh) = (rev_eval(u, env, n) for u in a)
        return (lo, tl, gl) if x < lo else (hi, th, gh) if x > hi else (x, tx, gx)
    if op == "where":
        cond, yes, no = a
        l, r = rev_eval(cond.args[0], env, n)[0], rev_eval(cond.args[1], env, n)[0]
        truth = {"<": l < r, "<=": l <= r, ">": l > r, ">=": l >= r}[cond.val]
        return rev_eval(yes if truth else no, env, n)
    if op == "red":
        red, excl = node.val
        parts = [rev_eval(a[0], replace_env(env, j=j), n) for j in range(len(env.z)) if not (excl and j == env.y)]
        vals = [p[0] for p in parts]
        if red in ("sum", "mean"):
            c = mpf(1) if red == "sum" else mpf(1) / len(parts)
            t = _lin(((c, p[1]) for p in parts), n)
            g = _lin([(c, p[2]) for p in parts] + [(mpf(len(parts) + 1), t)], n)
            return mpmath.fsum(vals) * c, t, g
        if red in ("max", "min"):
            i = vals.index(max(vals) if red == "max" else min(vals))
            return parts[i]
        m = max(vals)  # logsumexp: softmax weights
        v = m + mpmath.log(mpmath.fsum(mpmath.exp(u - m) for u in vals))
        ws = [mpmath.exp(u - v) for u in vals]
        t = _lin(((w, p[1]) for w, p in zip(ws, parts)), n)
        return v, t, _lin([(w, p[2]) for w, p in zip(ws, parts)] + [(mpf(len(parts) + 3), t)], n)
    if op == "bred":
        w = env.params["__w"]
        parts = [(w[i], rev_eval(a[0], replace_env(env, i=i), n)) for i in range(len(env.x)) if w[i] != 0]
        c = mpf(1) if node.val == "sum" else 1 / mpmath.fsum(w)
        total = mpmath.fsum(wi * p[0] for wi, p in parts) * c
        t = _lin(((abs(wi * c), p[1]) for wi, p in parts), n)
        return total, t, _lin([(abs(wi * c), p[2]) for wi, p in parts] + [(mpf(len(parts) + 2), t)], n)
    if op == "lsmT":
        T = rev_eval(a[0], env, n)[0]
        zs = [u / T for u in env.z]
        m = max(zs)
        lse = m + mpmath.log(mpmath.fsum(mpmath.exp(u - m) for u in zs))
        sm = [mpmath.exp(u - lse) for u in zs]
        t = [(s + (1 if i == env.y else 0)) / abs(T) for i, s in enumerate(sm)]
        return zs[env.y] - lse, t, [4 * u for u in t]
    if op == "call":
        return rev_eval(expand_call(node), env, n)
    raise ValueError(op)


def rev_bound(loss: GeneratedLoss, env: Env, n: int) -> list:
    """Per input component: the bound (unit roundoffs) on eager autograd's gradient error (``rev_eval``),
    plus the rounding of the final scaling by weights, grad_output and the mean's divisor."""
    env.locals = {}
    for lname, e in loss.locals:
        env.locals[lname] = rev_eval(e, env, n)
    _, t, g = rev_eval(loss.ret, env, n)
    return [gk + 3 * tk for gk, tk in zip(g, t)]
