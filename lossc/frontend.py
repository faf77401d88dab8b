"""Front end: lark parses the text; an evaluator lowers each loss to a ``LossSpec``.

Locals are inlined, series expanded, other losses called by name are inlined,
and class reductions become ``Reduction`` s of the row normal form.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import lark
import sympy

from .functions import LANGUAGE as FUNCTIONS
from .errors import LossError, LossKindError, LossNameError, LossParamError, LossSyntaxError, suggest
from .ir import (BATCH_SIZE, IS_Y, LSE, NUM_CLASSES, P_J, P_T, Q_J, T, U, Z_J, Z_Y, BatchSum,
                 Constraint, Learnable, LossSpec, Param, Reduction, TargetIndex, Vec, at_target, class_entry,
                 is_internal, numbered, per_class)
from .kinds import KINDS
from .resources import resource

MAX_SERIES_TERMS = 1000
MAX_CALL_DEPTH = 16
# Nesting limits keep every later stage (sympy's diff and printers recurse on the expression tree) far
# from Python's recursion limit. A chain a + b + c (or a * b / c) counts as one level however long it is.
MAX_NESTING = 64  # levels of the syntax tree
MAX_EXPR_DEPTH = 96  # levels of a lowered expression, with locals inlined
MAX_NUMBER_DIGITS = 100
MAX_CONSTANT_DIGITS = 1000  # of a constant power such as 9^9^9, which sympy would evaluate exactly
# Budgets that keep every text compiling in seconds: deterministic sizes, the same on every machine.
MAX_SOURCE_CHARS = 32_000  # of a text (the catalog's longest is under 2,000)
MAX_EXPR_SIZE = 1_500  # nodes of a lowered loss with its reductions, each use of a local counted (catalog: <= 90)
LARGEST_FLOAT = 1.7976931348623157e308


def _reserved_names() -> frozenset[str]:
    """Names a spec may not use for a loss or a parameter: Python's keywords and builtins,
    the runtime's globals and the arguments of the generated module's functions.
    (Kernels read parameters as ``P.name``, so their locals never clash with them.)"""
    import ast
    import builtins
    runtime = ast.parse((Path(__file__).with_name("runtime.py")).read_text())
    top = {t.id for node in runtime.body if isinstance(node, ast.Assign) for t in node.targets
           if isinstance(t, ast.Name)}
    top |= {node.name for node in runtime.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    top |= {alias.asname or alias.name for node in runtime.body if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names}
    generated = {"P", "self", "input", "target", "weight", "ignore_index", "reduction", "sample_weight",
                 "backend", "validate", "class_group", "batch_group", "from_logits", "inplace_grad", "triton", "tl",
                 "unused", "NAME", "SPEC_HASH", "KERNEL", "LossParamError", "LossInputError",
                 "spec", "over", "name", "use_cache", "order"}  # (keywords of lossc.loss, parse, check, poly)
    return frozenset(top | generated | set(dir(builtins)) | set(keyword.kwlist))


RESERVED = _reserved_names()
CLASS_REDUCTIONS = {"sum", "mean", "max", "min", "logsumexp"}
#: the named constants of the language (a parameter or local of the same name hides one; no inf yet: the
#: front end refuses constants beyond the largest float)
CONSTANTS = {"pi": sympy.pi}
SPECIAL_FUNCTIONS = {"where", "logsumexp", "softmax", "log_softmax", "sum", "mean", "max", "min"}


class _ParenPostLexer:
    """Drops newlines inside (), [] so that expressions may span lines."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for token in stream:
            if token.type in ("LPAR", "LSQB"):
                depth += 1
            elif token.type in ("RPAR", "RSQB"):
                depth = max(depth - 1, 0)
            elif token.type == "_NL" and depth:
                continue
            yield token


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resource("grammar", "lossc.lark").read_text()
    return lark.Lark(grammar, parser="lalr", postlex=_ParenPostLexer(), propagate_positions=True,
                     maybe_placeholders=True)


_TOKEN_WORDS = {"NAME": "a name", "NUMBER": "a number", "_NL": "a new line", "RPAR": "')'",
                "LPAR": "'('", "RSQB": "']'", "COLON": "':'", "COMMA": "','", "RETURN": "'return'",
                "LOSS": "'loss'", "OVER": "'over'", "$END": "the end of the text"}


def _syntax_error(err: lark.exceptions.UnexpectedInput, text: str, filename: str | None) -> LossSyntaxError:
    line, column = getattr(err, "line", None), getattr(err, "column", None)
    if not isinstance(line, int) or line < 1:
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    expected = sorted(getattr(err, "expected", None) or getattr(err, "allowed", None) or [])
    token = getattr(err, "token", None)
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        message = f"unexpected character {text[err.pos_in_stream]!r}" if err.pos_in_stream < len(text) \
            else "unexpected end of text"
    elif token is not None and getattr(token, "type", "") == "$END":
        message = "unexpected end of text"
    elif token is not None:
        shown = "new line" if token.type == "_NL" else repr(str(token))
        message = f"unexpected {shown}"
    else:
        message = "invalid syntax"
    hint = None
    words = [_TOKEN_WORDS.get(e, repr(e.lower()) if e.isupper() and e.isalpha() else e) for e in expected]
    if words and len(words) <= 6:
        hint = "expected " + " or ".join(words)
    if "RETURN" in expected or (token is not None and getattr(token, "type", "") == "$END"):
        hint = "every loss ends with a 'return' line" if hint is None else hint + "; every loss ends with 'return'"
    return LossSyntaxError(message, source=text, filename=filename, line=line, column=column, hint=hint)


def parse_tree(text: str, filename: str | None = None) -> lark.Tree:
    """The lark tree of a text, or a LossSyntaxError pointing at the problem."""
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as err:
        raise _syntax_error(err, text, filename) from None
    deep = _too_deep(tree)
    if deep is not None:
        line, column = (deep.line, deep.column) if isinstance(deep, lark.Token) else (deep.meta.line, deep.meta.column)
        raise LossSyntaxError(f"expression nested too deeply (limit {MAX_NESTING})", source=text, filename=filename,
                              line=line, column=column, hint="name parts of it with local definitions")
    return tree


_CHAIN_OPS = ({"+", "-"}, {"*", "/"})


def _chain_class(node) -> int | None:
    """0 for a + or - node, 1 for a * or / node: a left operand of the same class continues its chain."""
    if isinstance(node, lark.Tree) and node.data == "binop":
        op = str(node.children[1])
        return 0 if op in _CHAIN_OPS[0] else 1
    return None


def _too_deep(tree: lark.Tree):
    """The first node nested deeper than MAX_NESTING (a token or a tree), or None. Iterative: lark's tree
    may be as deep as the text is long."""
    stack = [(tree, 0, tree)]
    while stack:
        node, depth, anchor = stack.pop()
        if isinstance(node, lark.Token) or (isinstance(node, lark.Tree) and not node.meta.empty):
            anchor = node  # the innermost node with a position
        if depth > MAX_NESTING:
            return anchor
        if not isinstance(node, lark.Tree):
            continue
        chain = _chain_class(node)
        for i, child in enumerate(node.children):
            same_chain = i == 0 and chain is not None and _chain_class(child) == chain
            stack.append((child, depth if same_chain else depth + 1, anchor))
    return None


def _fold(root: sympy.Basic, combine, memo: dict[int, int]) -> int:
    """combine(the children's values) at every node of root's tree, bottom-up and iteratively, each shared
    subexpression once (memo, by node id, may be shared by several roots)."""
    stack = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in memo:
            continue
        if ready or not node.args:
            memo[id(node)] = combine([memo[id(a)] for a in node.args])
        else:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if id(a) not in memo)
    return memo[id(root)]


def _expr_size(values) -> int:
    """Nodes of the trees of values (sympy expressions or class vectors), a subexpression counted at each
    of its uses, as the later stages (diff, rewrites, printers) see it; computed on the shared graph."""
    size: dict[int, int] = {}
    roots = (value.expr if isinstance(value, Vec) else value for value in values)
    return sum(_fold(root, lambda children: 1 + sum(children), size)
               for root in roots if isinstance(root, sympy.Basic))


def _expr_depth(value) -> int:
    """Depth of a lowered value's sympy tree (shared subexpressions counted once; iterative)."""
    root = value.expr if isinstance(value, Vec) else value
    if not isinstance(root, sympy.Basic):
        return 0
    return _fold(root, lambda children: 1 + max(children, default=0), {})


# ---------------------------------------------------------------------------------------------
# Files and lookup of losses by name


@dataclass
class SourceFile:
    """A parsed ``.loss`` text: its losses by name, in order."""

    text: str
    filename: str | None
    losses: dict[str, lark.Tree]

    @classmethod
    def from_text(cls, text: str, filename: str | None = None) -> "SourceFile":
        text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as some editors write
        if len(text) > MAX_SOURCE_CHARS:
            line = text.count("\n", 0, MAX_SOURCE_CHARS) + 1
            column = MAX_SOURCE_CHARS - (text.rfind("\n", 0, MAX_SOURCE_CHARS) + 1) + 1
            raise LossSyntaxError(f"text too long: {len(text)} characters (limit {MAX_SOURCE_CHARS})", source=text,
                                  filename=filename, line=line, column=column,
                                  hint="split it into several losses, or name parts with local definitions")
        tree = parse_tree(text, filename)
        losses: dict[str, lark.Tree] = {}
        for loss in tree.children:
            name_token = loss.children[1]
            if str(name_token) in losses:
                raise LossNameError(f"loss {name_token} is defined twice", source=text, filename=filename,
                                    line=name_token.line, column=name_token.column)
            losses[str(name_token)] = loss
        if not losses:
            raise LossSyntaxError("no loss defined", source=text, filename=filename, line=1, column=1,
                                  hint="a loss starts with 'loss NAME(...) over KIND:'")
        return cls(text, filename, losses)

    def main_name(self) -> str:
        """The loss a file stands for: the one named like the file, else the last one."""
        stem = Path(self.filename).stem if self.filename else None
        return stem if stem in self.losses else list(self.losses)[-1]


def catalog_names() -> list[str]:
    return sorted(p.stem for p in resource("catalog").glob("*.loss"))


@lru_cache(maxsize=256)
def catalog_text(name: str) -> str:
    return resource("catalog", f"{name}.loss").read_text()


@lru_cache(maxsize=256)
def catalog_file(name: str) -> SourceFile:
    return SourceFile.from_text(catalog_text(name), f"catalog/{name}.loss")


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class _ClassIndex:
    """The index j bound by a class reduction."""

    name: str


@dataclass
class _ReductionPool:
    """Interns class reductions by content, naming them R1, R2, …"""

    items: list[Reduction] = field(default_factory=list)

    def intern(self, op: str, body: sympy.Expr, exclude_target: bool) -> sympy.Symbol:
        if op == "lse" and body == Z_J and not exclude_target:
            return LSE
        for item in self.items:
            if (item.op, item.body, item.exclude_target) == (op, body, exclude_target):
                return item.symbol
        symbol = numbered("R", len(self.items) + 1)
        self.items.append(Reduction(symbol, op, body, exclude_target))
        return symbol


class _Lowering:
    """Lowers one loss of a file to a LossSpec."""

    def __init__(self, file: SourceFile, name: str, given: dict, stack: tuple[str, ...]):
        self.file, self.name, self.given, self.stack = file, name, given, stack
        self.tree = file.losses[name]
        self.pool = _ReductionPool()
        self.constraints: list[Constraint] = []
        self.batch_sums: list[BatchSum] = []     # batch kind
        self.learnables: dict[str, Learnable] = {}  # tasks kind

    # -- errors --------------------------------------------------------------------------------
    def error(self, cls, message: str, node=None, hint: str | None = None) -> LossError:
        line = column = None
        if isinstance(node, lark.Token):
            line, column = node.line, node.column
        elif node is not None and getattr(node, "meta", None) is not None and not node.meta.empty:
            line, column = node.meta.line, node.meta.column
        return cls(message, source=self.file.text, filename=self.file.filename, line=line, column=column, hint=hint)

    # -- the loss ------------------------------------------------------------------------------
    def lower(self) -> LossSpec:
        doc_token, name_token, params_tree, kind_token, *body = self.tree.children
        if len(self.stack) > MAX_CALL_DEPTH:
            raise self.error(LossNameError, "losses call each other too deeply", name_token)
        self.check_identifier(name_token, "loss name")
        derived = {f"{name_token}_loss", "".join(w[:1].upper() + w[1:] for w in str(name_token).split("_")) + "Loss"}
        clash = sorted(derived & RESERVED)
        if clash:  # the generated module defines NAME_loss and NameLoss next to the runtime's globals
            raise self.error(LossNameError, f"loss name {name_token!s} would define {clash[0]}, which is reserved",
                             name_token, "choose another name")
        kind = KINDS.get(str(kind_token))
        if kind is None:
            raise self.error(LossKindError, f"unknown kind {kind_token}", kind_token,
                             suggest(str(kind_token), KINDS) or "kinds: " + ", ".join(KINDS))
        self.kind = kind
        self.params = self.lower_params(params_tree)
        self.env: dict = dict(kind.names)
        for p in self.params.values():
            self.env[p.name] = {"vector": p, "int": sympy.Integer(self.ints.get(p.name, 0)),
                                "class": Vec(class_entry(p.name))}.get(p.type, p.symbol)
        *statements, ret = body
        for stmt in statements:
            self.statement(getattr(self, "stmt_" + stmt.data), stmt)
        expr = self.statement(lambda node: self.scalar(self.eval(node), node, "the returned loss"),
                              ret.children[0])
        if kind.normal_form.batch_sums and expr.free_symbols & {U, T}:
            raise self.error(LossKindError, "s and y are one element's values: use them inside a batch sum, "
                             "sum(... for i)", ret.children[0])
        if kind.normal_form.task_losses and not any(_is_task_loss(x) for x in expr.free_symbols):
            raise self.error(LossKindError, "a tasks loss combines task losses L1 … Lk (or L[i])", ret.children[0])
        doc = _docstring(doc_token)
        bound = tuple(sorted(self.ints.items()))
        return LossSpec(name=self.name, kind=kind.name, params=tuple(self.params.values()), expr=expr,
                        reductions=tuple(self.pool.items) + tuple(self.batch_sums),
                        constraints=tuple(self.constraints), bound=bound,
                        features=kind.features, doc=doc, source=self.file.text, filename=self.file.filename,
                        learnables=tuple(self.learnables.values()))

    def statement(self, run, node):
        """``run(node)`` for one line of the loss, its result no deeper than MAX_EXPR_DEPTH and, with the
        reductions so far, no larger than MAX_EXPR_SIZE."""
        try:
            result = run(node)
            value = self.env.get(str(node.children[0])) if node.data == "assign" else result
            too_deep = _expr_depth(value) > MAX_EXPR_DEPTH
        except RecursionError:  # a backstop: sympy recursing before the depth could be measured
            too_deep = True
        if too_deep:
            raise self.error(LossSyntaxError, f"expression nested too deeply (limit {MAX_EXPR_DEPTH} levels "
                             "once locals are substituted)", node, "simplify the chain of definitions")
        size = _expr_size([value] + [r.body for r in self.pool.items + self.batch_sums])
        if size > MAX_EXPR_SIZE:
            raise self.error(LossSyntaxError, f"expression too large: {size} operations once locals are "
                             f"substituted (limit {MAX_EXPR_SIZE})", node,
                             "a local used twice is copied into each use; simplify the definitions")
        return result

    def check_identifier(self, token, what: str) -> None:
        name = str(token)
        if name in RESERVED or name.startswith("_"):
            raise self.error(LossNameError, f"{what} {name!r} is reserved", token,
                             "choose another name (names may not start with '_' or be Python keywords)")

    def lower_params(self, tree) -> dict[str, Param]:
        params: dict[str, Param] = {}
        if tree is None:
            self.ints = {}
            return params
        structural = self.structural_names()
        for node in tree.children:
            name_token, size_token, default_tree = node.children
            name = str(name_token)
            self.check_identifier(name_token, "parameter")
            if self.kind.normal_form.task_losses and _is_task_name(name):
                raise self.error(LossNameError, f"parameter {name} clashes with the task losses L1 … Lk of kind "
                                 "tasks", name_token, "choose another name")
            if name in params or name in self.kind.names:
                raise self.error(LossNameError, f"parameter {name} clashes with "
                                 + ("another parameter" if name in params else f"a name of kind {self.kind.name}"),
                                 name_token)
            default = None if default_tree is None else self.constant(default_tree)
            if size_token is not None and self.kind.names.get(str(size_token)) == NUM_CLASSES:
                if default is not None and not (isinstance(default, (int, float)) and default > 0):
                    raise self.error(LossParamError, f"the default of per-class parameter {name} must be one "
                                     "positive number (used for every class); give the values at construction",
                                     default_tree)
                params[name] = Param(name, "class", default, str(size_token))
            elif size_token is not None:
                size = str(size_token)
                if size not in params or params[size].type != "int":
                    raise self.error(LossParamError, f"the size {size} of vector {name} must be an integer "
                                     "parameter declared before it", size_token)
                if default is not None and not isinstance(default, tuple):
                    default = (default,)
                params[name] = Param(name, "vector", default, size)
            elif name in structural:
                params[name] = Param(name, "int", default)
            else:
                if isinstance(default, tuple):
                    raise self.error(LossParamError, f"parameter {name} has a list default but no size",
                                     name_token, f"declare it as {name}[N] with an integer parameter N")
                params[name] = Param(name, "float", default)
        self.ints = self.bind_ints(params, tree)
        for node in tree.children:
            self.check_form_symbols(params[str(node.children[0])], node.children[0])
        return params

    def check_form_symbols(self, param: Param, token) -> None:
        """A parameter's symbols are none of the normal form's own (p_t, C, p[j], q[j] of the row form):
        a per-class parameter p would read as softmax(z)[j]."""
        own = {s.name: s for s in self.kind.normal_form.own_symbols}
        names = [class_entry(param.name).name, class_entry(param.name, "y").name] if param.type == "class" \
            else [param.symbol.name]
        clash = next((n for n in names if n in own), None)
        if clash is not None:
            raise self.error(LossNameError, f"parameter {param.name} would make the name {clash}, which the "
                             f"{self.kind.name} kind already uses", token, "choose another name")

    def structural_names(self) -> set[str]:
        """Parameters used as series bounds or vector sizes: integers fixed at construction."""
        names = set()
        for node in self.tree.iter_subtrees():
            if node.data == "over_range":
                for bound in node.children[2:]:
                    names |= {str(t) for t in bound.scan_values(lambda v: isinstance(v, lark.Token)
                                                                  and v.type == "NAME")}
            if node.data in ("param", "learn_stmt") and node.children[1] is not None:
                names.add(str(node.children[1]))
        return names

    def bind_ints(self, params: dict[str, Param], tree) -> dict[str, int]:
        ints: dict[str, int] = {}
        for p in params.values():
            if p.type == "int":
                # An explicit value, else the length of a vector given for it, else the defaults.
                value = self.given.get(p.name)
                sized = [v for v in params.values() if v.size == p.name]
                if value is None:
                    value = next((len(_as_tuple(self.given[v.name])) for v in sized if v.name in self.given), None)
                if value is None:
                    value = p.default
                if value is None:
                    value = next((len(v.default) for v in sized if v.default is not None), None)
                if value is None:
                    raise self.error(LossParamError, f"integer parameter {p.name} needs a value", tree)
                if isinstance(value, bool) or not float(value).is_integer():
                    raise self.error(LossParamError, f"parameter {p.name} must be an integer, got {value!r}", tree)
                ints[p.name] = int(value)
        for p in params.values():
            if p.type == "vector":
                n = ints[p.size]
                if p.name in self.given and len(_as_tuple(self.given[p.name])) != n:
                    raise self.error(LossParamError, f"{p.name} needs {n} values ({p.size} = {n}), "
                                     f"got {len(_as_tuple(self.given[p.name]))}", tree)
                if p.default is not None and len(p.default) not in (1, n) and p.name not in self.given:
                    raise self.error(LossParamError, f"default of {p.name} has {len(p.default)} values, "
                                     f"but {p.size} = {n}", tree)
        return ints

    def constant(self, tree):
        value = self.eval(tree, {}, constant=True)
        if isinstance(value, tuple):
            return tuple(_number(v) for v in value)
        if not (isinstance(value, sympy.Expr) and value.is_number and value.is_real):
            raise self.error(LossParamError, "a default must be a number or a list of numbers", tree)
        return _number(value)

    # -- statements ----------------------------------------------------------------------------
    def stmt_where_stmt(self, node) -> None:
        cond = self.eval(node.children[0])
        text = _slice(self.file.text, node.children[0])
        allowed = {p.symbol for p in self.params.values()}
        if not _is_condition(cond):
            raise self.error(LossSyntaxError, "a where line needs a condition such as 'gamma >= 0'", node)
        free = cond.free_symbols
        if any(s not in allowed and not _is_vector_element(s, self.params) for s in free):
            raise self.error(LossKindError, "a where line may only constrain parameters", node)
        if cond == sympy.false:
            raise self.error(LossParamError, f"constraint violated: {text}", node)
        defaults = {p.symbol: sympy.nsimplify(p.default, rational=True) for p in self.params.values()
                    if p.type == "float" and p.default is not None}
        if cond.subs(defaults) == sympy.false:
            shown = ", ".join(f"{s} = {self.params[str(s)].default}" for s in cond.free_symbols
                              if s in defaults)
            raise self.error(LossParamError, f"constraint violated by the defaults: {text} ({shown})", node)
        if cond != sympy.true:
            self.constraints.append(Constraint(cond, text, node.meta.line, node.meta.column))

    def stmt_learn_stmt(self, node) -> None:
        if not self.kind.normal_form.task_losses:
            raise self.error(LossKindError, "learnable parameters ('learn') belong to the tasks kind, "
                             f"not to {self.kind.name}", node)
        name_token, size_token, init_tree = node.children
        name = str(name_token)
        self.check_identifier(name_token, "learnable parameter")
        if name in self.params or name in self.learnables or name in self.env or _is_task_name(name):
            raise self.error(LossNameError, f"learnable parameter {name} clashes with another name", name_token)
        init = self.constant(init_tree)
        if isinstance(init, tuple):
            raise self.error(LossParamError, f"learnable parameter {name} starts from one number", init_tree)
        size = None
        if size_token is not None:
            size = str(size_token)
            if size not in self.params or self.params[size].type != "int":
                raise self.error(LossParamError, f"the size {size} of learnable {name} must be an integer "
                                 "parameter", size_token)
            if self.ints[size] < 1:
                raise self.error(LossParamError, f"learnable {name} needs {size} >= 1", size_token)
        learnable = Learnable(name, float(init), size)
        self.learnables[name] = learnable
        self.env[name] = learnable if size is not None else sympy.Symbol(name, real=True)

    def stmt_assign(self, node) -> None:
        name_token, value = node.children
        name = str(name_token)  # locals are inlined: they never reach generated code
        bound = self.kind.names.get(name)
        if bound is not None and not (isinstance(bound, sympy.Symbol) and bound in (P_T,) or
                                      name in ("m", "r")):
            raise self.error(LossNameError, f"{name} is an input of kind {self.kind.name} and cannot be "
                             "redefined", name_token, "pick another name for the local")
        if name in self.params:
            raise self.error(LossNameError, f"{name} is a parameter and cannot be redefined", name_token)
        self.env[name] = self.eval(value)

    # -- expressions ---------------------------------------------------------------------------
    def eval(self, node, env: dict | None = None, constant: bool = False):
        env = self.env if env is None else env
        if isinstance(node, lark.Token):
            raise self.error(LossSyntaxError, f"unexpected {node}", node)
        method = getattr(self, "x_" + node.data, None)
        if method is None:
            raise self.error(LossSyntaxError, f"{node.data} is not allowed here", node)
        if constant and node.data not in ("number", "neg", "list_", "binop", "power"):
            raise self.error(LossParamError, "a default must be a number or a list of numbers", node)
        return method(node, env)

    def x_number(self, node, env):
        token = node.children[0]
        text = str(token)
        mantissa, _, exponent = text.lower().partition("e")
        # sympy would build 10**999999999 exactly, and Python refuses to read very long integers
        if len(mantissa) > MAX_NUMBER_DIGITS or len(exponent) > 5 or math.isinf(float(text)) or \
                (exponent and abs(int(exponent)) > 400):
            raise self.error(LossSyntaxError, f"number out of range: {text[:20]}{'…' * (len(text) > 20)}", token,
                             f"numbers have at most {MAX_NUMBER_DIGITS} digits and a magnitude below 1.8e308")
        if any(c in text for c in ".eE"):
            return sympy.Rational(text)
        return sympy.Integer(text)

    def x_name(self, node, env):
        token = node.children[0]
        name = str(token)
        if name in env:
            value = env[name]
            if isinstance(value, Param):
                raise self.error(LossKindError, f"{name} is a vector parameter: index it, e.g. {name}[k]", token)
            if isinstance(value, Learnable):
                raise self.error(LossKindError, f"{name} is a learnable vector: index it, e.g. {name}[i]", token)
            return value
        if name in CONSTANTS:
            return CONSTANTS[name]
        if self.kind.normal_form.task_losses and _is_task_name(name):
            if name == "L":
                raise self.error(LossKindError, "L is the list of task losses: index it, L[i] (from 1)", token)
            return sympy.Symbol(name, real=True)
        known = set(env) | set(FUNCTIONS) | SPECIAL_FUNCTIONS | set(CONSTANTS)
        hint = suggest(name, known)
        raise self.error(LossNameError, f"unknown name {name}", token,
                         hint or f"names of kind {self.kind.name}: {', '.join(sorted(self.kind.names))}")

    def x_list_(self, node, env):
        return tuple(self.scalar(self.eval(c, env, constant=True), c, "a list entry") for c in node.children)

    def x_neg(self, node, env):
        return self.lift(lambda a: -a, [self.eval(node.children[0], env)], node)

    def x_binop(self, node, env):
        # a + b - c + … is a left-leaning chain as deep as it is long: walk its spine iteratively
        chain = _chain_class(node)
        spine = [node]
        while _chain_class(spine[-1].children[0]) == chain:
            spine.append(spine[-1].children[0])
        value = self.eval(spine[-1].children[0], env)
        for step in reversed(spine):
            _, op, right = step.children
            b = self.eval(right, env)
            if str(op) == "/" and _is_zero(b):
                raise self.error(LossSyntaxError, "division by zero", step)
            value = self.lift(_BINARY[str(op)], [value, b], step)
        return value

    def x_power(self, node, env):
        base, _, exponent = node.children
        a, b = self.eval(base, env), self.eval(exponent, env)
        if _is_zero(a) and isinstance(b, sympy.Expr) and b.is_negative:
            raise self.error(LossSyntaxError, "zero to a negative power", node)
        if _constant_power_digits(a, b) > MAX_CONSTANT_DIGITS:
            raise self.error(LossSyntaxError, f"constant power too large (more than {MAX_CONSTANT_DIGITS} digits)",
                             node)
        return self.lift(lambda x, y: x ** y, [a, b], node)

    def x_compare(self, node, env):
        items = node.children
        values = [self.eval(items[0], env)]
        result = sympy.true
        for op, right in zip(items[1::2], items[2::2]):
            rhs = self.eval(right, env)
            result = sympy.And(result, self.relation(values[-1], str(op), rhs, node))
            values.append(rhs)
        return result

    def relation(self, a, op: str, b, node):
        if isinstance(a, (_ClassIndex, TargetIndex)) or isinstance(b, (_ClassIndex, TargetIndex)):
            pair = {type(a), type(b)}
            if pair != {_ClassIndex, TargetIndex} or op not in ("==", "!="):
                raise self.error(LossKindError, "a class index can only be compared with the target: "
                                 "(j == y) or (j != y)", node)
            return IS_Y if op == "==" else 1 - IS_Y
        a, b = self.scalar(a, node, "a comparison"), self.scalar(b, node, "a comparison")
        rel = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge,
               "==": sympy.Eq, "!=": sympy.Ne}[op](a, b)
        return rel

    def x_and_(self, node, env):
        return sympy.And(*[self.boolean(self.eval(c, env), c) for c in node.children])

    def x_or_(self, node, env):
        return sympy.Or(*[self.boolean(self.eval(c, env), c) for c in node.children])

    def x_not_(self, node, env):
        return sympy.Not(self.boolean(self.eval(node.children[0], env), node))

    def boolean(self, value, node):
        if _is_condition(value):
            return value
        raise self.error(LossSyntaxError, "expected a condition", node)

    def x_index(self, node, env):
        base_node, index_node = node.children
        if self.kind.normal_form.task_losses and base_node.data == "name":
            base_name = str(base_node.children[0])
            learnable = env.get(base_name)
            if isinstance(learnable, Learnable) or (base_name == "L" and base_name not in env):
                index = self.eval(index_node, env)
                if not isinstance(index, sympy.Integer):
                    raise self.error(LossKindError, f"{base_name} must be indexed by an integer known at "
                                     "construction, such as i of 'for i in 1..K'", index_node)
                if base_name == "L":
                    if int(index) < 1:
                        raise self.error(LossParamError, "task losses are L[1], L[2], …", index_node)
                    return sympy.Symbol(f"L{int(index)}", real=True)
                n = self.ints[learnable.size]
                if not 1 <= int(index) <= n:
                    raise self.error(LossParamError, f"{base_name}[{index}] is out of range 1..{n}", index_node)
                return sympy.Symbol(f"{base_name}[{int(index)}]", real=True)
        index_name = str(index_node.children[0]) if index_node.data == "name" else None
        if self.kind.normal_form.batch_sums and (isinstance(env.get(index_name), _BatchIndex)
                                          or (index_name == "i" and index_name not in env)):
            # s[i], y[i]: inside a batch sum, and in a local (one element's term, as s and y are there)
            base = self.eval(base_node, env)
            if not (isinstance(base, sympy.Expr) and base in (U, T)):
                raise self.error(LossKindError, "only s and y are indexed by the batch index (s[i], y[i])", node)
            return base
        if base_node.data == "name" and isinstance(env.get(str(base_node.children[0])), Param):
            param = env[str(base_node.children[0])]
            index = self.eval(index_node, env)
            if not (isinstance(index, sympy.Integer)):
                raise self.error(LossKindError, f"{param.name} must be indexed by an integer known at "
                                 "construction, such as k of 'for k in 1..N'", index_node)
            n = self.ints[param.size]
            if not 1 <= int(index) <= n:
                raise self.error(LossParamError, f"{param.name}[{index}] is out of range 1..{n}", index_node)
            return param.element(int(index))
        base = self.eval(base_node, env)
        index = self.eval(index_node, env)
        if not isinstance(base, Vec):
            raise self.error(LossKindError, "only class vectors (z, softmax(z), …) can be indexed", node)
        if isinstance(index, TargetIndex):
            return at_target(base.expr)
        if isinstance(index, _ClassIndex):
            return base.expr
        raise self.error(LossKindError, "a class vector is indexed by the target y or by the j of a "
                         "class reduction", index_node)

    def x_call(self, node, env):
        name_token, args_tree = node.children
        name = str(name_token)
        args = [] if args_tree is None else list(args_tree.children)
        generators = [a for a in args if isinstance(a, lark.Tree) and a.data.startswith("over_")]
        if generators:
            if len(args) != 1 or name not in CLASS_REDUCTIONS:
                raise self.error(LossSyntaxError, f"'{name}(... for ...)' is not a reduction; reductions: "
                                 + ", ".join(sorted(CLASS_REDUCTIONS)), node)
            return self.reduction(name, generators[0], env, node)
        if name in env and not isinstance(env[name], Param) and name not in FUNCTIONS:
            raise self.error(LossNameError, f"{name} is not a function", name_token)
        if name == "where":
            cond, a, b = self.positional(args, 3, name, node, env)
            return self.where(cond, a, b, node)
        if name in ("softmax", "log_softmax", "logsumexp") and name not in self.loss_names():
            (v,) = self.positional(args, 1, name, node, env)
            if not isinstance(v, Vec):
                raise self.error(LossKindError, f"{name} takes a class vector such as z", node)
            if per_class(v.expr) and self.reads_input_reduction(v.expr):
                raise self.error(LossKindError, f"class reductions cannot be nested: {name} of a class vector "
                                 "that involves another class reduction", node)
            lse = self.pool.intern("lse", v.expr, False)
            if name == "logsumexp":
                return lse
            if name == "softmax":
                return Vec(P_J if lse == LSE and v.expr == Z_J else sympy.exp(v.expr - lse))
            return Vec(v.expr - lse)
        if name in FUNCTIONS:
            function = FUNCTIONS[name]
            values = self.positional(args, function.arity, name, node, env)
            return self.lift(function.build, values, node)
        return self.call_loss(name_token, args, env, node)

    def positional(self, args, arity: int, name: str, node, env) -> list:
        if any(isinstance(a, lark.Tree) and a.data == "kwarg" for a in args):
            raise self.error(LossSyntaxError, f"{name} takes no keyword arguments", node)
        if len(args) != arity:
            raise self.error(LossSyntaxError, f"{name} takes {arity} argument{'s' * (arity != 1)}, "
                             f"got {len(args)}", node)
        return [self.eval(a, env) for a in args]

    def where(self, cond, a, b, node):
        if isinstance(cond, sympy.Expr) and cond.free_symbols & {IS_Y}:
            return self.lift(lambda x, y: cond * x + (1 - cond) * y, [a, b], node)
        cond = _unfold_wheres(self.boolean(cond, node))
        return self.lift(lambda x, y: sympy.Piecewise((x, cond), (y, True)), [a, b], node)

    def lift(self, fn, values, node):
        """Apply a scalar function to scalars, or entrywise to class vectors."""
        for v in values:
            if isinstance(v, (TargetIndex, _ClassIndex, _BatchIndex)):
                raise self.error(LossKindError, "a class index is only used to index (z[y]) or compared "
                                 "(j == y)", node)
            if isinstance(v, Param):
                raise self.error(LossKindError, f"vector parameter {v.name} must be indexed", node)
            if isinstance(v, tuple):
                raise self.error(LossKindError, "a list is only allowed as a parameter default", node)
            if _is_condition(v):
                raise self.error(LossKindError, "a condition is used as a number; use where(cond, a, b)", node)
        vectors = any(isinstance(v, Vec) for v in values)
        plain = [v.expr if isinstance(v, Vec) else v for v in values]
        try:
            result = fn(*plain)
        except (TypeError, ValueError, ZeroDivisionError) as err:
            raise self.error(LossSyntaxError, f"invalid expression: {err}", node) from None
        if isinstance(result, sympy.Expr) and result.has(sympy.zoo, sympy.nan):
            raise self.error(LossSyntaxError, "the expression is undefined (division by zero?)", node)
        if isinstance(result, sympy.Expr):
            self.check_constants(result, node)
        return Vec(result) if vectors else result

    def check_constants(self, result: sympy.Expr, node) -> None:
        """The numbers an operation folded (the result and its operands: every operation is checked as it is
        made) are real and finite in float64: (-1)^0.5, 2^1024, 1e308 * 10 are errors, not 0 or inf."""
        for part in (result,) + result.args:
            if part is sympy.I or sympy.I in part.args or (  # (I, 2*I, I*pi, 1 + I, I*r: two levels suffice)
                    isinstance(part, sympy.Pow) and part.base.is_number and part.exp.is_number
                    and part.is_real is False):  # (-8)^(1/3): sympy's principal root is complex
                raise self.error(LossSyntaxError, "the expression is not real (a complex constant such as "
                                 "(-1)^0.5)", node)
            if part.is_Number and (part.is_infinite or abs(part) > LARGEST_FLOAT):
                raise self.error(LossSyntaxError, "constant out of range: its magnitude exceeds the largest "
                                 "float (1.8e308)", node)

    def scalar(self, value, node, what: str) -> sympy.Expr:
        if isinstance(value, Vec):
            raise self.error(LossKindError, f"{what} is a class vector; index it (v[y]) or reduce it "
                             "(sum(v[j] for j))", node)
        if isinstance(value, (TargetIndex, _ClassIndex, _BatchIndex)):
            raise self.error(LossKindError, f"{what} is a class index, not a number", node)
        if isinstance(value, (Param, tuple)):
            raise self.error(LossKindError, f"{what} must be a number, not a vector", node)
        if not isinstance(value, sympy.Expr):
            raise self.error(LossKindError, f"{what} is a condition, not a number; use where(cond, a, b)", node)
        return value

    # -- reductions ----------------------------------------------------------------------------
    def reduction(self, name: str, gen, env, node):
        body_node, index_token, *rest = gen.children
        index = str(index_token)
        if index in env and not isinstance(env[index], sympy.Integer):
            raise self.error(LossNameError, f"the index {index} hides the name {index}", index_token)
        if gen.data == "over_range":
            return self.series(name, body_node, index, rest, env, node)
        if self.kind.normal_form.batch_sums:
            return self.batch_sum(name, gen, body_node, index, env, node)
        if not self.kind.normal_form.rows:
            raise self.error(LossKindError, f"class reductions need a row kind (multiclass), not {self.kind.name}",
                             node)
        if any(isinstance(v, _ClassIndex) for v in env.values()):
            raise self.error(LossKindError, "class reductions cannot be nested", node)
        exclude = gen.data == "over_others"
        if exclude and not isinstance(env.get(str(rest[0])), TargetIndex):
            raise self.error(LossKindError, f"'for {index} != …' excludes the target class: write "
                             f"'for {index} != y'", rest[0])
        inner = dict(env)
        inner[index] = _ClassIndex(index)
        body = self.scalar(self.eval(body_node, inner), body_node, "the body of a reduction")
        if per_class(body) and self.reads_input_reduction(body):
            raise self.error(LossKindError, "class reductions cannot be nested", node)
        count = NUM_CLASSES - 1 if exclude else NUM_CLASSES
        if name == "min":
            return -self.class_reduction("max", -body, exclude)
        if name == "mean":
            return self.class_reduction("sum", body, exclude) / count
        return self.class_reduction({"sum": "sum", "max": "max", "logsumexp": "lse"}[name], body, exclude)

    def reads_input_reduction(self, expr: sympy.Expr) -> bool:
        """Whether expr uses a class reduction of the inputs (z, q): those may not nest; reductions of
        parameters alone (max(counts[j]^(-1/4) for j)) are constants of the row and may."""
        bodies = {r.symbol: r.body for r in self.pool.items}
        inputs = {Z_J, P_J, Q_J, Z_Y, LSE, P_T}
        return any(s in bodies and bodies[s].free_symbols & inputs for s in expr.free_symbols)

    def batch_sum(self, name: str, gen, body_node, index: str, env, node) -> sympy.Expr:
        """``sum(g(s, y) for i)`` (or ``mean``: the sum over N) as a batch sum B1, B2, … of the batch form."""
        if gen.data != "over_all" or name not in ("sum", "mean"):
            raise self.error(LossKindError, "a batch loss reduces over the batch with sum(... for i) or "
                             "mean(... for i)", node)
        if any(isinstance(v, _BatchIndex) for v in env.values()):
            raise self.error(LossKindError, "batch sums cannot be nested", node)
        inner = dict(env)
        inner[index] = _BatchIndex(index)
        body = self.scalar(self.eval(body_node, inner), body_node, "the body of a batch sum")
        if any(is_internal(s, "B") for s in body.free_symbols) or \
                BATCH_SIZE in body.free_symbols:
            raise self.error(LossKindError, "a batch sum's body is one element's term in s and y (and "
                             "parameters): it cannot use other batch sums or N", node)
        if not body.free_symbols & {U, T}:
            total = body * BATCH_SIZE
        else:
            total = next((b.symbol for b in self.batch_sums if b.body == body), None)
            if total is None:
                total = numbered("B", len(self.batch_sums) + 1)
                self.batch_sums.append(BatchSum(total, "sum", body))
        return total / BATCH_SIZE if name == "mean" else total

    def class_reduction(self, op: str, body: sympy.Expr, exclude: bool) -> sympy.Expr:
        """op over j (or j != y); an indicator [j=y] splits off the target's term exactly."""
        if IS_Y in body.free_symbols:
            rest = self.class_reduction(op, body.subs(IS_Y, 0), True)
            if exclude:
                return rest
            own = at_target(body)
            return {"sum": lambda: rest + own, "max": lambda: sympy.Max(rest, own),
                    "lse": lambda: _logaddexp(rest, own)}[op]()
        count = NUM_CLASSES - 1 if exclude else NUM_CLASSES
        if not per_class(body):
            return {"sum": body * count, "max": body, "lse": body + sympy.log(count)}[op]
        if op == "sum":  # terms, and factors of terms, that do not depend on j leave the sum:
            # sum(z[j] - lse) = sum(z[j]) - C lse, sum(q[j] lse) = lse sum(q[j])
            body = sympy.expand(body, power_exp=False) if isinstance(body, sympy.Add) else body  # (exp(z[j] - lse)
            # stays whole: split, sum(exp(z[j])) overflows)
            total, grouped = sympy.S.Zero, {}
            for term in sympy.Add.make_args(body):
                factor, rest = _split_factor(term)
                if per_class(rest):
                    grouped[rest] = grouped.get(rest, sympy.S.Zero) + factor
                else:
                    total += term * count
            if total != 0 or len(grouped) != 1 or any(f != 1 for f in grouped.values()):
                return total + sympy.Add(*[f * self.pool.intern(op, rest, exclude) for rest, f in grouped.items()])
        return self.pool.intern(op, body, exclude)

    def series(self, name: str, body_node, index: str, bounds, env, node):
        lo, hi = (self.eval(b, env) for b in bounds)
        if not (isinstance(lo, sympy.Integer) and isinstance(hi, sympy.Integer)):
            raise self.error(LossKindError, "series bounds must be integers known at construction "
                             "(integer parameters or literals)", node)
        if int(hi) - int(lo) + 1 > MAX_SERIES_TERMS:
            raise self.error(LossParamError, f"series of more than {MAX_SERIES_TERMS} terms", node)
        terms = []
        for k in range(int(lo), int(hi) + 1):
            inner = dict(env)
            inner[index] = sympy.Integer(k)
            terms.append(self.scalar(self.eval(body_node, inner), body_node, "a series term"))
        if not terms:
            return sympy.Integer(0) if name in ("sum", "mean") else sympy.nan
        return {"sum": lambda: sympy.Add(*terms), "mean": lambda: sympy.Add(*terms) / len(terms),
                "max": lambda: sympy.Max(*terms), "min": lambda: sympy.Min(*terms),
                "logsumexp": lambda: sympy.log(sympy.Add(*[sympy.exp(t) for t in terms]))}[name]()

    # -- calling another loss --------------------------------------------------------------------
    def loss_names(self) -> set[str]:
        return set(self.file.losses)

    def call_loss(self, name_token, args, env, node):
        name = str(name_token)
        if name in self.file.losses:
            file = self.file
        elif name in catalog_names():
            file = catalog_file(name)
        else:
            known = set(FUNCTIONS) | SPECIAL_FUNCTIONS | set(self.file.losses) | set(catalog_names())
            raise self.error(LossNameError, f"unknown function or loss {name}", name_token,
                             suggest(name, known))
        if name in self.stack:
            raise self.error(LossNameError, f"loss {name} calls itself", name_token)
        callee_tree = file.losses[name]
        callee_params = callee_tree.children[2].children if callee_tree.children[2] is not None else []
        names = [str(p.children[0]) for p in callee_params]
        values: dict[str, object] = {}
        keywords = False
        for i, arg in enumerate(args):
            if isinstance(arg, lark.Tree) and arg.data == "kwarg":
                key = str(arg.children[0])
                if key not in names:
                    raise self.error(LossNameError, f"{name} has no parameter {key}", arg,
                                     suggest(key, names))
                if key in values:
                    raise self.error(LossSyntaxError, f"{name}: parameter {key} given twice", arg)
                values[key] = self.eval(arg.children[1], env)
                keywords = True
            else:
                if keywords:
                    raise self.error(LossSyntaxError, "positional argument after a keyword argument", arg)
                if i >= len(names):
                    raise self.error(LossSyntaxError, f"{name} takes at most {len(names)} arguments", arg)
                values[names[i]] = self.eval(arg, env)
        # Structural integers must be known now; vectors come as lists or vector parameters.
        given = {}
        for key, value in values.items():
            if isinstance(value, sympy.Integer):
                given[key] = int(value)
            elif isinstance(value, Param):
                given[key] = tuple(value.element(i) for i in range(1, self.ints[value.size] + 1))
            elif isinstance(value, tuple):
                given[key] = value
        callee = _Lowering(file, name, given, self.stack + (self.name,)).lower()
        if callee.kind != self.kind.name:
            raise self.error(LossKindError, f"{name} is a {callee.kind} loss, not {self.kind.name}", name_token)
        mapping = {}
        for p in callee.params:
            value = values.get(p.name)
            if p.type == "float":
                if value is None:
                    if p.default is None:
                        raise self.error(LossParamError, f"{name} needs parameter {p.name}", node)
                    value = sympy.nsimplify(p.default, rational=True)
                mapping[p.symbol] = self.scalar(value, node, f"parameter {p.name} of {name}")
            elif p.type == "vector":
                n = dict(callee.bound)[p.size]
                items = given.get(p.name) or tuple(sympy.nsimplify(v, rational=True) for v in
                                                   (p.default if len(p.default) == n else p.default * n))
                for i, item in enumerate(items, 1):
                    mapping[p.element(i)] = item
            elif p.type == "class":
                if value is None and p.default is None:
                    raise self.error(LossParamError, f"{name} needs per-class parameter {p.name}", node)
                entry = Vec(sympy.nsimplify(p.default, rational=True)) if value is None else value
                if not isinstance(entry, Vec):
                    entry = Vec(self.scalar(entry, node, f"parameter {p.name} of {name}"))
                mapping[class_entry(p.name)] = entry.expr
                mapping[class_entry(p.name, "y")] = at_target(entry.expr)
        # simultaneous replacements (xreplace): the callee's R1 may become this loss's R2 while its R2 becomes
        # R3, and sequential subs would then turn R1 into R3
        rename = {}
        for r in callee.reductions:
            rename[r.symbol] = self.pool.intern(r.op, r.body.xreplace(mapping).xreplace(rename), r.exclude_target)
        for c in callee.constraints:
            cond = c.condition.subs(mapping)
            if cond == sympy.false:
                raise self.error(LossParamError, f"{name}: constraint violated: {c.text}", node)
            if cond != sympy.true:
                self.constraints.append(Constraint(cond, f"{name}: {c.text}", node.meta.line, node.meta.column))
        return callee.expr.xreplace(mapping).xreplace(rename)


def _split_factor(term: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """term = factor * rest with factor constant over the classes (a number or row scalars)."""
    factors = sympy.Mul.make_args(term)
    constant = [f for f in factors if not per_class(f) and IS_Y not in f.free_symbols]
    return sympy.Mul(*constant), sympy.Mul(*[f for f in factors if f not in constant])


@dataclass(frozen=True)
class _BatchIndex:
    """The index i bound by a batch sum (batch kind)."""

    name: str


def _is_task_name(name: str) -> bool:
    """L (the list) or L1, L2, …: the task losses of the tasks kind."""
    return name == "L" or (name.startswith("L") and name[1:].isdigit() and not name[1:].startswith("0"))


def _is_task_loss(symbol: sympy.Symbol) -> bool:
    return _is_task_name(symbol.name) and symbol.name != "L"


_BINARY = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y}


def _constant_power_digits(a, b) -> float:
    """About how many digits sympy's exact value of the number a ** b has (0 unless both are numbers)."""
    if not (isinstance(a, sympy.Number) and isinstance(b, sympy.Number)) or a.is_zero or b.is_zero:
        return 0.0
    try:
        size = max(abs(math.log10(abs(float(a.p)))) if a.is_Rational else abs(math.log10(abs(float(a)))),
                   abs(math.log10(abs(float(a.q)))) if a.is_Rational else 0.0)
        return abs(float(b)) * size
    except (OverflowError, ValueError):
        return math.inf


def _is_condition(value) -> bool:
    return isinstance(value, sympy.Basic) and not isinstance(value, sympy.Expr)


def _unfold_wheres(cond):
    """A condition comparing a where (``where(r < 1, 1, 1.25) >= a1``) as the same test without one:
    ``(r < 1 & 1 >= a1) | (r >= 1 & 1.25 >= a1)``. sympy does this itself, but then simplifies the result
    with simplify_logic(deep=True), which runs the whole of simplify on both sides of every relation:
    minutes for a where nested in a condition beside exp and tanh."""
    if not isinstance(cond, sympy.Basic) or not cond.has(sympy.Piecewise):
        return cond
    if isinstance(cond, (sympy.And, sympy.Or, sympy.Not)):
        return cond.func(*(_unfold_wheres(a) for a in cond.args))
    inner = next(e for e in sympy.preorder_traversal(cond) if isinstance(e, sympy.Piecewise))
    cases, earlier = [], []
    for value, test in inner.args:  # (the first piece whose test holds)
        test = _unfold_wheres(test)
        taken = sympy.And(test, *(sympy.Not(t) for t in earlier))
        cases.append(sympy.And(taken, _unfold_wheres(cond.xreplace({inner: value}))))
        earlier.append(test)
    return sympy.Or(*cases)


def _logaddexp(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    top = sympy.Max(a, b)
    return top + sympy.log(sympy.exp(a - top) + sympy.exp(b - top))


def _is_zero(value) -> bool:
    return isinstance(value, sympy.Expr) and value.is_zero is True


def _is_vector_element(symbol: sympy.Symbol, params: dict[str, Param]) -> bool:
    base = symbol.name.split("[")[0]
    return "[" in symbol.name and base in params and params[base].type == "vector"


def _number(value) -> float | int:
    value = sympy.sympify(value)
    return int(value) if value.is_Integer else float(value)


def _as_tuple(value) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    try:
        return tuple(value.tolist())  # tensors and arrays
    except AttributeError:
        return (value,)


def _slice(text: str, node) -> str:
    return text[node.meta.start_pos:node.meta.end_pos] if not node.meta.empty else ""


def _docstring(token) -> str:
    if token is None:
        return ""
    return str(token)[3:-3].strip()


def lower(file: SourceFile, name: str | None = None, given: dict | None = None) -> LossSpec:
    """Lower the loss ``name`` of a file (default: the file's main loss) to a LossSpec."""
    name = name or file.main_name()
    if name not in file.losses:
        raise LossNameError(f"no loss {name} in {file.filename or 'the text'}",
                            hint=suggest(name, file.losses))
    return _Lowering(file, name, dict(given or {}), ()).lower()
