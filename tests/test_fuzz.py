"""A front end no input can break: every malformed text ends in a ``LossError`` with a position.

Two sources of inputs: a seeded mutation fuzzer over the catalog's ``.loss`` files (delete, duplicate and
swap tokens and characters, insert keywords, operators and odd unicode, truncate), and hypothesis
strategies (token streams from the grammar's own vocabulary, arbitrary text, expressions that are valid
and must parse). No test here depends on wall-clock time: a hang detector (faulthandler, after a very
generous ``HANG_S`` seconds on one input) ends a stuck run with every thread's traceback; the 10 s budget
per input is measured by ``scripts/fuzz_frontend.py``. The CI run is fixed and deterministic;
``LOSSC_FUZZ_ITERATIONS=N`` multiplies the number of cases by N for a longer run (``LOSSC_FUZZ_SEED``
picks another seed).
"""

from __future__ import annotations

import faulthandler
import os
import random
import re
import string
from contextlib import contextmanager

import lark
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossc
from lossc.frontend import SourceFile, _parser, catalog_names, lower
from lossc.passes import derive
from lossc.resources import resource

HANG_S = 120.0  # a hang detector, not a speed assert
ITERATIONS = max(1, int(os.environ.get("LOSSC_FUZZ_ITERATIONS", "1")))
SEED = int(os.environ.get("LOSSC_FUZZ_SEED", "20240611"))
MUTATIONS_PER_FILE = 120 * ITERATIONS
HYPOTHESIS = settings(max_examples=100 * ITERATIONS, deadline=None, derandomize="LOSSC_FUZZ_SEED" not in os.environ,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                      database=None)


@contextmanager
def _hang_detector(seconds: float = HANG_S):
    """faulthandler ends the process, with every thread's traceback, if one input runs past ``seconds``
    (Python code or C code, such as a huge integer power, that never returns)."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def _compile(text: str):
    """Parse, lower and derive a .loss text; returns the LossSpec or the LossError it raised. Any other
    exception or a RecursionError fails the test with the input (a hang ends the run, see _hang_detector)."""
    try:
        with _hang_detector():
            try:
                return derive(lower(SourceFile.from_text(text, "<fuzz>")))
            except lossc.LossError as err:
                return err
    except Exception as err:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{type(err).__name__}: {err} on input {text!r}")


def _assert_clean(text: str) -> None:
    """A spec, or a LossError whose position lies in the text and which renders."""
    result = _compile(text)
    if isinstance(result, lossc.LossError):
        assert result.line is not None and result.column is not None, (result.message, text)
        assert 1 <= result.line <= text.count("\n") + 2, (result.line, text)
        assert result.column >= 1, (result.column, text)
        assert result.render()


# --------------------------------------------------------------------------
# the mutation fuzzer over the catalog
# --------------------------------------------------------------------------

KEYWORDS = ["loss", "over", "where", "learn", "return", "for", "in", "and", "or", "not", "multiclass", "margin",
            "binary", "regression", "z", "y", "p_t", "softmax", "sum", "max", "logsumexp", "where(", "detach",
            "__import__", "exec", "self", "P", "_x", "focal", "cross_entropy"]
OPERATORS = ["+", "-", "*", "/", "^", "**", "(", ")", "[", "]", ",", ":", "=", "==", "!=", "<=", ">=", "<", ">",
             "..", '"""', "'", '"', "\\", "#", "\n", "\n    ", "\t", " ", "1e308", "1e-400", "9^9^9", "0", "0.",
             ".5", "1e", "99999999999999999999999", "-0"]
ODD = ["é", "∑", "λ", "\u2028", "\u00a0", "\ufeff", "\x00", "\r", "\x0c", "\ud800", "😀", "ß", "Ⅸ", "١"]
_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\"\"\"|\s+|.", re.S)


def _catalog_texts() -> dict[str, str]:
    return {name: resource("catalog", f"{name}.loss").read_text() for name in catalog_names()}


def _mutate(text: str, rng: random.Random) -> str:
    tokens = _TOKEN.findall(text)
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.randrange(9)
        i = rng.randrange(len(tokens)) if tokens else 0
        if not tokens:
            tokens = [rng.choice(KEYWORDS)]
        elif op == 0:
            del tokens[i]
        elif op == 1:
            tokens.insert(i, tokens[i])
        elif op == 2:
            j = rng.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == 3:
            tokens.insert(i, rng.choice(KEYWORDS + OPERATORS))
        elif op == 4:
            tokens.insert(i, rng.choice(ODD))
        elif op == 5:
            tokens = tokens[:i]
        else:  # character level
            chars = list("".join(tokens))
            k = rng.randrange(len(chars) + 1)
            if op == 6 and chars:
                del chars[min(k, len(chars) - 1)]
            elif op == 7 and chars:
                chars.insert(k, chars[min(k, len(chars) - 1)])
            else:
                chars.insert(k, rng.choice(string.printable + "".join(ODD)))
            tokens = _TOKEN.findall("".join(chars))
    return "".join(tokens)


@pytest.mark.parametrize("name", catalog_names())
def test_mutated_catalog_sources(name):
    text = _catalog_texts()[name]
    rng = random.Random(f"{SEED}-{name}")
    _assert_clean(text)  # the unmutated source parses
    for _ in range(MUTATIONS_PER_FILE):
        _assert_clean(_mutate(text, rng))


def test_mutator_changes_its_input():
    """The fuzzer is not vacuous: most mutants differ and many are rejected."""
    rng = random.Random(SEED)
    texts = _catalog_texts()
    mutants = [(t, _mutate(t, rng)) for t in list(texts.values()) * 4]
    assert sum(a != b for a, b in mutants) > 0.9 * len(mutants)
    rejected = sum(isinstance(_compile(b), lossc.LossError) for _, b in mutants)
    assert rejected > 0.3 * len(mutants)


# --------------------------------------------------------------------------
# hostile shapes
# --------------------------------------------------------------------------

HEADER = "loss d() over margin:\n    return "


@pytest.mark.parametrize("body", [
    "(" * 5000 + "m" + ")" * 5000,
    " + ".join(["m"] * 3000),
    " * ".join(["m"] * 3000),
    " - ".join(["m", "1"] * 1500),
    "-" * 3000 + "m",
    "+" * 3000 + "m",
    "^".join(["m"] * 3000),
    "exp(" * 3000 + "m" + ")" * 3000,
    "max(" * 2000 + "m" + ", 1)" * 2000,
    "where(m > 0, " * 1000 + "m" + ", 1)" * 1000,
    "(" * 5000 + "m",
    "m" + ")" * 5000,
    "m" + " +" * 3000,
    "[" * 3000 + "m" + "]" * 3000,
    "m " + "not " * 3000 + "m",
    " and ".join(["m > 0"] * 3000),
])
def test_pathological_shapes(body):
    _assert_clean(HEADER + body + "\n")


def test_long_chain_of_locals():
    lines = "".join(f"    x{i} = x{i - 1} + m * {i}\n" for i in range(1, 3000))
    _assert_clean("loss d() over margin:\n    x0 = m\n" + lines + "    return x2999\n")


def test_exponential_sharing_stays_fast():
    """Each local doubles the tree but not the DAG: lowering must not walk the tree."""
    lines = "".join(f"    x{i} = x{i - 1} * x{i - 1} + m\n" for i in range(1, 40))
    _assert_clean("loss d() over margin:\n    x0 = m\n" + lines + "    return x39\n")


# --------------------------------------------------------------------------
# hypothesis: the grammar's vocabulary, arbitrary text, valid expressions
# --------------------------------------------------------------------------

def _vocabulary() -> list[str]:
    """Every literal terminal of the grammar, and samples of its pattern terminals."""
    words = sorted({t.pattern.value for t in _parser().terminals if isinstance(t.pattern, lark.lexer.PatternStr)})
    return words + ["<=", ">=", "==", "<", ">", "*", "/", "^", "**", "m", "z", "y", "p_t", "gamma", "j", "k",
                    "N", "exp", "log", "softmax", "sum", "1", "2.5", "1e3", '"""doc"""', "# c", "\n", "\n    ",
                    "margin", "multiclass", "d"]


VOCAB = _vocabulary()


@HYPOTHESIS
@given(st.lists(st.sampled_from(VOCAB), max_size=60), st.sampled_from([" ", ""]))
def test_token_streams(tokens, sep):
    _assert_clean(sep.join(tokens))


@HYPOTHESIS
@given(st.lists(st.sampled_from(VOCAB), max_size=40))
def test_token_streams_after_a_header(tokens):
    _assert_clean(HEADER + " ".join(tokens) + "\n")


@HYPOTHESIS
@given(st.text(max_size=200))
def test_arbitrary_text_as_a_body(text):
    _assert_clean(HEADER + text)


@HYPOTHESIS
@given(st.text(max_size=120))
def test_arbitrary_text_through_the_api(text):
    """``lossc.parse`` takes names, paths and text: whatever it makes of a string, only LossError escapes."""
    try:
        with _hang_detector():
            lossc.parse(text)
    except lossc.LossError:
        pass


_NUMBER = st.sampled_from(["0.5", "2", "3", "1.5", "0.25", "10", "1e-3"])
_LEAF = st.one_of(st.just("m"), _NUMBER)


def _expressions(depth: int = 4):
    """Expressions over the margin kind that are valid whatever their shape: no division by a value that
    may be 0, no constant power that is undefined."""
    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(inner, _NUMBER).map(lambda t: f"({t[0]}) / {t[1]}"),
            st.tuples(inner, st.sampled_from(["2", "3"])).map(lambda t: f"({t[0]})^{t[1]}"),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"-({e})"),
            st.tuples(st.sampled_from(["exp", "softplus", "sigmoid", "tanh", "abs", "pos", "log1p"]), inner)
            .map(lambda t: f"{t[0]}({t[1]})" if t[0] != "log1p" else f"log1p(({t[1]})^2)"),
            st.tuples(st.sampled_from(["max", "min"]), inner, inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"where({t[0]} > 1, {t[1]}, {t[2]})"),
        )
    return st.recursive(_LEAF, extend, max_leaves=12)


def _respaced(expr: str) -> str:
    """The same expression with redundant parentheses, a line break and a comment inside them."""
    return "(\n    " + expr.replace(" + ", " +  # a comment\n ") + "\n)"


@HYPOTHESIS
@given(_expressions())
def test_valid_expressions_parse(expr):
    spec = _compile(HEADER + expr + "\n")
    assert isinstance(spec, lossc.LossSpec), f"{spec} for {expr!r}"
    assert spec.gradient is not None
    again = _compile(HEADER + _respaced(expr) + "\n")
    assert isinstance(again, lossc.LossSpec) and sympy.simplify(again.expr - spec.expr) == 0, expr


# --------------------------------------------------------------------------
# hostile names and docstrings never reach generated code unescaped
# --------------------------------------------------------------------------

HOSTILE_DOCS = [
    'a \\""" + __import__("os").system("echo pwned") + \\""" x',
    "it's \\' and \\\" and \\\\ and \\n and \\x00 and '''",
    "}}{{ name }}{% if 1 %}jinja{% endif %}",
    "line one\n\n    line two\r\n\tline three \u2028 sep \x0c ff",
    "ends with a backslash \\\\",
    "\\\\",
    "a null \x00 byte",
    "\"\" two quotes",
    "# not a comment\nimport os",
]


@pytest.mark.parametrize("doc", HOSTILE_DOCS)
@pytest.mark.parametrize("target", ["torch", "all"])
def test_hostile_docstrings_are_data(doc, target):
    text = f'"""{doc}"""\nloss hostile(a = 1.0) over margin:\n    where (a >= 0  # \'\'\' """ \\\n )\n' \
           '    return pos(a - m)\n'
    spec = lossc.parse(text)
    source = lossc.generate(spec, target=target)
    compile(source, "<generated>", "exec")
    module = lossc.module(spec, target=target)
    assert module.HostileLoss.__doc__ == spec.doc
    assert spec.doc in (doc.strip(), doc.strip().replace("\\\\", "\\"))  # the text between the quotes
    assert "pwned" not in "\n".join(line for line in source.splitlines()
                                    if not line.lstrip().startswith(("#", "__doc__")))
    with pytest.raises(lossc.LossParamError, match="constraint violated"):
        module.HostileLoss(a=-1.0)


@pytest.mark.parametrize("name", ["__import__", "_private", "exec", "eval", "print", "torch", "self", "P",
                                  "input", "class", "lambda", "apply_loss", "KERNEL"])
def test_hostile_names_are_refused_with_a_position(name):
    for text, line in ((f"loss {name}() over margin:\n    return m\n", 1),
                       (f"loss ok({name} = 1.0) over margin:\n    return m\n", 1)):
        result = _compile(text)
        assert isinstance(result, lossc.LossError), text
        assert result.line == line and result.column is not None


def test_loss_names_whose_generated_names_clash_are_refused():
    """A loss NAME defines NAME_loss and NameLoss in its module, next to the runtime's globals:
    'apply' would replace the runtime's apply_loss (a TypeError at the first call)."""
    result = _compile("loss apply(a = 1.0) over margin:\n    return pos(a - m)\n")
    assert isinstance(result, lossc.LossNameError) and "apply_loss" in result.message
    assert (result.line, result.column) == (1, 6)
    module = lossc.loss("loss applied(apply = 1.0) over margin:\n    return pos(apply - m)\n", backend="torch")
    assert module.params.apply == 1.0  # as a parameter it is harmless
