"""The one IR: a frozen ``LossSpec`` around sympy expressions, in one of three normal forms.

Symbols that are not user names carry names no user symbol can have, so they never collide with
parameters: the row form's ``z[y]``, ``lse(z)``, ``z[j]``, ``[j=y]`` (``z`` is an input of every row
kind, never a parameter), and every other internal symbol made by ``internal`` (``@u``, ``@t``,
``@R1``, ``@B1``, ``@N``, ...). User symbols are identifiers (parameters, learnables), ``name[k]``
(vector elements) and ``name[j]``, ``name[y]`` (entries of per-class parameters). Printers give
internal symbols code names of their own (``code_name``); parameters print as ``P.name``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

import sympy

INTERNAL = "@"  # the first character of an internal symbol's name: no user name starts with it
_USER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\[([0-9]+|j|y)\])?")


class _Internal(sympy.Symbol):
    """An internal symbol: named ``@label`` (no user symbol is), shown as its label (``u``, ``R1``) in
    sympy's text, pretty and LaTeX output; code printers give it a code name instead (``code_name``)."""

    def _sympystr(self, printer) -> str:
        return self.name[len(INTERNAL):]

    def _pretty(self, printer):
        return printer._print(sympy.Symbol(self.name[len(INTERNAL):]))

    def _latex(self, printer) -> str:
        return printer._print(sympy.Symbol(self.name[len(INTERNAL):]))


def internal(label: str, **assumptions) -> sympy.Symbol:
    """A symbol of lossc's own (an input, a feature, a class or batch reduction, a checker variable):
    named ``@label``, which no user symbol can be."""
    return _Internal(INTERNAL + label, **assumptions)


def is_internal(symbol: sympy.Basic, family: str | None = None) -> bool:
    """Whether symbol is an internal one (of ``family``: "R" for R1, R2, ... when given)."""
    if not (isinstance(symbol, sympy.Symbol) and symbol.name.startswith(INTERNAL)):
        return False
    label = symbol.name[len(INTERNAL):]
    return family is None or (label.startswith(family) and label[len(family):].isdigit())


def numbered(family: str, index: int) -> sympy.Symbol:
    """The index-th symbol of a family of internal ones: class reductions R1, R2, … (``family`` "R"),
    the gradient's extra reductions A1, … ("A"), batch sums B1, … ("B")."""
    return internal(f"{family}{index}", real=True)


def code_name(symbol: sympy.Symbol) -> str:
    """The name an internal symbol has in generated code (``@R1`` -> ``r1``, ``@m`` -> ``m``): a
    local of the generated functions, which read parameters as attributes ``P.name`` only."""
    if not is_internal(symbol):
        raise ValueError(f"{symbol} is not an internal symbol")
    name = symbol.name[len(INTERNAL):].lower()
    assert name.isidentifier() and not name.startswith("_"), name
    return name


def is_user_name(name: str) -> bool:
    """Whether a symbol name is one a user's spec can make (and so no internal symbol may have)."""
    return _USER_NAME.fullmatch(name) is not None


# Row normal form (multiclass, distribution): per-row scalars ...
Z_Y = sympy.Symbol("z[y]", real=True)          # the target's logit
LSE = sympy.Symbol("lse(z)", real=True)        # log-sum-exp of the row
P_T = sympy.Symbol("p_t", positive=True)       # softmax(z)[y] = exp(z[y] - lse(z))
NUM_CLASSES = sympy.Symbol("C", positive=True, integer=True)
# ... and per-class symbols, the terms of class reductions and of the gradient.
Z_J = sympy.Symbol("z[j]", real=True)
P_J = sympy.Symbol("p[j]", positive=True)      # softmax(z)[j]
IS_Y = sympy.Symbol("[j=y]", nonnegative=True)  # 1 for the target class, else 0
Q_J = sympy.Symbol("q[j]", nonnegative=True)   # distribution kind: the target probability of class j
WEIGHT = "weight"                              # the class weights given at call time, a class vector
CLASS_SYMBOLS = (Z_J, P_J, IS_Y)
# The row form's own symbols: a parameter of a row loss may not make one of these names (p_t, C, p[j]
# of a per-class parameter p, ...), see ``form_symbol_names``.
ROW_FORM_SYMBOLS = (Z_Y, LSE, P_T, NUM_CLASSES, Z_J, P_J, IS_Y, Q_J)


def class_entry(name: str, at: str = "j") -> sympy.Symbol:
    """Entry ``name[j]`` (or ``name[y]``, the target's) of a class vector given as a parameter:
    per-class parameters (``prior[C]``) and the call's class weights (``weight``)."""
    return sympy.Symbol(f"{name}[{at}]", positive=True) if name == WEIGHT else sympy.Symbol(f"{name}[{at}]", real=True)


def class_symbols(expr: sympy.Basic) -> set:
    """The symbols of expr that vary over the classes j of a row (z[j], p[j], q[j], prior[j], ...)."""
    return {s for s in expr.free_symbols if isinstance(s, sympy.Symbol) and s.name.endswith("[j]")}


def per_class(expr: sympy.Basic) -> bool:
    """Whether expr varies over the classes j of a row (the indicator [j=y] aside)."""
    return bool(class_symbols(expr))


def at_target(expr: sympy.Expr) -> sympy.Expr:
    """expr at j = y: z[j] -> z[y], p[j] -> p_t, [j=y] -> 1, prior[j] -> prior[y]."""
    mapping = {IS_Y: sympy.Integer(1)}
    for s in class_symbols(expr):
        mapping[s] = P_T if s == P_J else (Z_Y if s == Z_J else class_entry(s.name[:-3], "y"))
    return expr.xreplace(mapping)

# Elementwise normal form: the model output and the target of one element.
U = internal("u", real=True)
T = internal("t", real=True)


# Batch normal form: u, t are one element's prediction s_i and target y_i inside a batch sum;
# the loss itself is a function of the sums B_k and of N (the batch size, or its total weight).
BATCH_SIZE = internal("N", positive=True)


@dataclass(frozen=True)
class Vec:
    """A class vector (``z``, ``softmax(z)``, ``z + tau``): its entry at class j as an expression."""

    expr: sympy.Expr


@dataclass(frozen=True)
class TargetIndex:
    """The target class ``y`` of a multiclass row, usable only as an index."""


@dataclass(frozen=True)
class Param:
    """A parameter of the loss: ``float`` and ``vector`` ones are runtime values,
    ``int`` ones are structural (series bounds, vector sizes) and bound at parse time."""

    name: str
    type: str                        # "float" | "int" | "vector" | "class" (one value per class, a tensor)
    default: float | int | tuple | None
    size: str | None = None          # vector: the int parameter giving its length

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name, real=True)

    def element(self, index: int) -> sympy.Symbol:
        """The symbol of a vector parameter's 1-based element."""
        return sympy.Symbol(f"{self.name}[{index}]", real=True)


@dataclass(frozen=True)
class Reduction:
    """``symbol = op_{j in J} body`` with J all classes, or all but the target."""

    symbol: sympy.Symbol
    op: str                          # "sum" | "max" | "lse"
    body: sympy.Expr                 # in z[j], p[j] and row scalars
    exclude_target: bool = False

    def describe(self) -> str:
        over = "j != y" if self.exclude_target else "j"
        name = {"sum": "sum", "max": "max", "lse": "logsumexp"}[self.op]
        return f"{self.symbol} = {name}({sympy.sstr(self.body)} for {over})"


@dataclass(frozen=True)
class BatchSum(Reduction):
    """``symbol = sum_i body(s_i, y_i)`` over the elements of the batch (batch form; ``op`` is "sum")."""

    def describe(self) -> str:
        return f"{self.symbol} = sum({sympy.sstr(self.body)} for i)"


@dataclass(frozen=True)
class Learnable:
    """A ``learn`` line: a learnable parameter (an ``nn.Parameter``), a scalar or a vector of ``size``
    (an int parameter) entries, each starting at ``init``."""

    name: str
    init: float
    size: str | None = None

    def symbols(self, bound: dict) -> tuple[sympy.Symbol, ...]:
        if self.size is None:
            return (sympy.Symbol(self.name, real=True),)
        return tuple(sympy.Symbol(f"{self.name}[{i}]", real=True) for i in range(1, bound[self.size] + 1))


@dataclass(frozen=True)
class Constraint:
    """A ``where`` line: a condition on the parameters, with its text and place."""

    condition: sympy.Basic
    text: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Gradient:
    """d loss / d input, elementwise (``u``) or per class ``c`` of a row (in z[j], p[j], [j=y]),
    with the extra class reductions it needs, computed after the loss's own."""

    expr: sympy.Expr
    aux: tuple[Reduction, ...] = ()


@dataclass(frozen=True)
class LossSpec:
    """A loss lowered to its normal form: ``expr`` is the per-row (or per-element)
    loss in the form's symbols, ``reductions`` the class reductions it uses."""

    name: str
    kind: str
    params: tuple[Param, ...]
    expr: sympy.Expr
    reductions: tuple[Reduction, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    bound: tuple[tuple[str, int], ...] = ()   # structural int parameters and their values
    features: tuple[tuple[sympy.Symbol, sympy.Expr], ...] = ()  # elementwise: m = t*u, ...
    doc: str = ""
    source: str = field(default="", repr=False, compare=False)
    filename: str | None = field(default=None, compare=False)
    gradient: Gradient | None = None
    learnables: tuple[Learnable, ...] = ()    # tasks kind: learn lines
    #: the spec as the front end lowered it, before the stable rewrites (what ``lossc grad`` shows)
    written: "LossSpec | None" = field(default=None, repr=False, compare=False)

    @property
    def form(self) -> str:
        from .kinds import KINDS
        return KINDS[self.kind].form

    @property
    def normal_form(self) -> "Form":
        """The form object (lossc/forms.py) of the loss's kind."""
        from .forms import FORMS
        return FORMS[self.form]

    @property
    def runtime_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.type != "int")

    @property
    def hash(self) -> str:
        """A stable digest of what the loss computes (not of its formatting)."""
        parts = (self.name, self.kind, self.params, sympy.srepr(self.expr),
                 [(r.op, sympy.srepr(r.body), r.exclude_target, str(r.symbol)) for r in self.reductions],
                 [sympy.srepr(c.condition) for c in self.constraints], self.bound, self.doc)
        if self.learnables:
            parts += (self.learnables,)
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    @property
    def has_target(self) -> bool:
        """Row form: whether rows have a target class y (multiclass), not soft targets (distribution)."""
        from .kinds import KINDS
        return KINDS[self.kind].target == "index"

    @property
    def class_vectors(self) -> tuple[str, ...]:
        """The class vectors the loss reads, each a tensor [C] at run time: its per-class parameters,
        and ``weight`` (the call's class weights) when the body uses it."""
        names = tuple(p.name for p in self.params if p.type == "class")
        exprs = [self.expr] + [r.body for r in self.reductions]
        used = set().union(*(e.free_symbols for e in exprs))
        return names + ((WEIGHT,) if {class_entry(WEIGHT), class_entry(WEIGHT, "y")} & used else ())

    def with_(self, **changes) -> "LossSpec":
        return replace(self, **changes)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)
