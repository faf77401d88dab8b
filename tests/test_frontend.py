"""Front end: lowering fixtures, parameters, calls, and errors with positions."""

from pathlib import Path

import pytest
import sympy
import torch
import torch.nn.functional as F

import lossc
from lossc.frontend import SourceFile, lower
from lossc.kinds.margin import M


def _cases():
    text = (Path(__file__).parent / "fixtures" / "lowering.txt").read_text()
    blocks = [b for b in text.split("\n\n") if b.strip() and not b.lstrip().startswith("# ")]
    for block in blocks:
        lines = block.strip("\n").splitlines()
        kind, *rest = lines
        arrow = next(i for i, line in enumerate(rest) if line.startswith("=> "))
        body = "\n".join(rest[:arrow])
        expected = rest[arrow][3:]
        reductions = [line[3:] for line in rest[arrow + 1:] if line.startswith("R: ")]
        yield pytest.param(kind, body, expected, reductions, id=f"{kind}:{body.strip()[:40]}")


@pytest.mark.parametrize("kind, body, expected, reductions", list(_cases()))
def test_lowering(kind, body, expected, reductions):
    spec = lower(SourceFile.from_text(f"loss case() over {kind}:\n{body}\n"))
    assert sympy.sstr(spec.expr) == expected
    assert [r.describe() for r in spec.reductions] == reductions


def test_series_expands_with_the_number_of_coefficients():
    spec = lossc.parse("poly_n", eps=[0.5, -0.3, 0.2])
    assert dict(spec.bound) == {"N": 3}
    assert spec.param("eps").type == "vector"
    assert lossc.parse("poly_n").bound == (("N", 1),)


def test_calling_another_loss_inlines_it_with_its_constraints():
    text = '''loss base(a = 1.0) over margin:
    where a > 0
    return pos(a - m)

loss top(b = 2.0) over margin:
    return base(b) + base(a = 3)
'''
    spec = lower(SourceFile.from_text(text), "top")
    assert sympy.sstr(spec.expr) == "pos(3 - m) + pos(b - m)"
    assert [c.text for c in spec.constraints] == ["base: a > 0"]
    with pytest.raises(lossc.LossParamError, match="constraint violated"):
        lower(SourceFile.from_text(text.replace("base(a = 3)", "base(a = -3)")), "top")


def test_integer_default_is_a_float_parameter_unless_structural():
    spec = lossc.parse("loss h(a = 1) over margin:\n    return pos(a - m)\n")
    assert spec.param("a").type == "float"


def _error(text):
    with pytest.raises(lossc.LossError) as info:
        lossc.parse(text)
    return info.value


@pytest.mark.parametrize("text, cls, line, column, message, hint", [
    ("loss a() over multiclass:\n    return -log(softmx(z)[y])\n", lossc.LossNameError, 2, 17,
     "unknown function or loss softmx", "did you mean softmax?"),
    ("loss a() over multiclas:\n    return z[y]\n", lossc.LossKindError, 1, 15, "unknown kind", "multiclass"),
    ("loss a() over margin:\n    return pos(1 - mm)\n", lossc.LossNameError, 2, 20, "unknown name mm", "m"),
    ("loss a() over margin:\n    x = 1 +\n    return x\n", lossc.LossSyntaxError, 2, 12, "unexpected", None),
    ("loss a() over margin:\n    return m +* 2\n", lossc.LossSyntaxError, 2, 15, "unexpected", None),
    ("loss a(g = 1.0) over margin:\n    where g < 0\n    return m\n", lossc.LossParamError, 2, 5,
     "constraint violated", None),
    ("loss a() over multiclass:\n    return z\n", lossc.LossKindError, 2, 12, "class vector", None),
    ("loss a() over margin:\n    return sum(m for j)\n", lossc.LossKindError, 2, 12, "row kind", None),
    ("loss a() over multiclass:\n    z = 2\n    return z[y]\n", lossc.LossNameError, 2, 5, "input", None),
    ("loss a() over multiclass:\n    return sum(sum(z[k] for k) * z[j] for j)\n", lossc.LossKindError, 2, 16,
     "nested", None),
    # LogitNorm's CE(z / (tau ||z||)): a log-sum-exp whose body holds another class reduction (issue 6)
    ("loss a() over multiclass:\n    s = sqrt(sum(z[j]^2 for j))\n    return -log_softmax(z / s)[y]\n",
     lossc.LossKindError, 3, 13, "nested", None),
    ("loss a() over multiclass:\n    return logsumexp(z * max(z[j] for j))\n", lossc.LossKindError, 2, 12,
     "nested", None),
    ("loss a() over margin:\n    return a()\n", lossc.LossNameError, 2, 12, "calls itself", None),
    ("loss a() over margin:\n    return m\n  $\n", lossc.LossSyntaxError, 3, 3, "unexpected character", None),
    ("loss a(N = 2, e[N] = [1.0, 2.0]) over margin:\n    return e[3] * m\n", lossc.LossParamError, 2, 14,
     "out of range", None),
    ("loss a() over margin:\n    learn s = 0.0\n    return m\n", lossc.LossKindError, 2, 5, "tasks", None),
    ("loss import() over margin:\n    return m\n", lossc.LossNameError, 1, 6, "reserved", None),
    ("loss _x() over margin:\n    return m\n", lossc.LossNameError, 1, 6, "reserved", None),
])
def test_errors_have_positions_and_hints(text, cls, line, column, message, hint):
    err = _error(text)
    assert isinstance(err, cls), err.render()
    if line is not None:
        assert (err.line, err.column) == (line, column), err.render()
        rendered = err.render()
        assert rendered.splitlines()[0].startswith(f"<string>:{line}:{column}: error:")
        assert rendered.splitlines()[2].strip() == "^"
    assert message in err.message
    if hint:
        assert hint in (err.hint or "")


def test_deep_nesting_is_a_clean_parse_or_error():
    deep = "loss d() over margin:\n    return " + "(" * 5000 + "m" + ")" * 5000 + "\n"
    assert lossc.parse(deep).expr == M
    m = M
    # chains of + - or * / are one level however long: lowered iteratively
    assert lossc.parse(" + ".join(["m"] * 3000), over="margin").expr == 3000 * m
    assert lossc.parse(" - ".join(["m"] * 3000), over="margin").expr == -2998 * m
    assert lossc.parse(" * ".join(["m"] * 3000), over="margin").expr == m ** 3000
    for body in ["-" * 3000 + "m", "^".join(["m"] * 3000), "exp(" * 2000 + "m" + ")" * 2000,
                 "z[y]" + "[y]" * 3000]:
        text = "loss d() over multiclass:\n    return " + body + "\n"
        with pytest.raises(lossc.LossSyntaxError, match=r"nested too deeply \(limit \d+\)") as info:
            lossc.parse(text)
        assert info.value.line == 2 and 12 < info.value.column < len(text)


def test_locals_nested_too_deeply_point_at_their_line():
    lines = ["    x0 = m"] + [f"    x{i} = exp(x{i - 1})" for i in range(1, 600)]
    with pytest.raises(lossc.LossSyntaxError, match="nested too deeply") as info:
        lossc.parse("loss d() over margin:\n" + "\n".join(lines) + "\n    return x599\n")
    assert 2 < info.value.line < 600 and info.value.column == 5


@pytest.mark.parametrize("body, message", [
    ("m * " + "1" * 5000, "number out of range"),
    ("m * 1e999999999", "number out of range"),
    ("m * 1e-999999999", "number out of range"),
    ("m * 1e400", "number out of range"),
    ("m * 9^9^9", "constant power too large"),
    ("m * 0.5^(10^7)", "constant power too large"),
])
def test_numbers_sympy_cannot_hold_are_errors(body, message):
    with pytest.raises(lossc.LossSyntaxError, match=message) as info:
        lossc.parse("loss d() over margin:\n    return " + body + "\n")
    assert info.value.line == 2


def test_unknown_catalog_name_suggests():
    with pytest.raises(lossc.LossNameError) as info:
        lossc.loss("focla")
    assert "focal" in info.value.hint


def test_unknown_parameter_is_an_error():
    with pytest.raises(lossc.LossParamError, match="gamma"):
        lossc.loss("focal", gama=1.0)
    with pytest.raises(lossc.LossParamError, match="constraint violated: gamma >= 0"):
        lossc.loss("focal", gamma=-1.0)


@pytest.mark.parametrize("name", ["focal", "sigmoid_focal", "anyloss_f1", "uncertainty_weighting"])
def test_every_keyword_of_a_generated_module_is_reserved(name):
    """A spec parameter may not take the name of a keyword the generated class or function already has
    (weight, inplace_grad, class_group, ...): the module would not compile."""
    import inspect
    from lossc.codegen import class_name, function_name
    from lossc.frontend import RESERVED
    module = lossc.module(name)
    params = {p.name for p in lossc.parse(name).params}
    keywords = set(inspect.signature(getattr(module, class_name(name)).__init__).parameters)
    if hasattr(module, function_name(name)):
        keywords |= set(inspect.signature(getattr(module, function_name(name))).parameters)
    assert keywords - params - {"self"} <= RESERVED


def test_a_parameter_named_like_a_module_keyword_is_refused():
    err = _error("loss a(inplace_grad = 1.0) over margin:\n    return inplace_grad * m\n")
    assert isinstance(err, lossc.LossNameError) and "reserved" in err.message


HANGS = [
    # tanh(x).is_real / .is_finite for an x sympy cannot prove real (bce()): sympy went through
    # x.as_real_imag() and (im x) mod pi, expanding and factoring the whole of x, as the where's exp was made
    ("loss t() over binary:\n    B2 = 1 / (2 + tanh(bce()))\n    return exp(tanh((1 + B2^2)^(-2) * bce()))\n",
     {}),
    # the gradient's x^e -> 0 at x = 0 reached into the where's test, and sympy's Piecewise ran
    # simplify_logic over a test with a Piecewise in it
    ("loss t(gamma = 0.0) over distribution:\n    eps = 0.25 * logsumexp(z) + expm1(-abs(logsumexp(z) * C))\n"
     "    zz = pos((2 + tanh(eps))^(-1.5))^gamma\n    return where(zz >= 0.5, C, logsumexp(z))\n", {"gamma": 2.0}),
]


def _hang_truth(source: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The two losses of HANGS by hand, per row."""
    if "binary" in source:
        bce = F.softplus(x) - t * x
        b2 = 1 / (2 + torch.tanh(bce))
        return torch.exp(torch.tanh((1 + b2 ** 2) ** -2 * bce))
    lse = torch.logsumexp(x, dim=-1)
    c = x.shape[-1]
    eps = 0.25 * lse + torch.expm1(-(lse * c).abs())
    zz = ((2 + torch.tanh(eps)) ** -1.5).clamp_min(0) ** 2.0
    return torch.where(zz >= 0.5, torch.full_like(lse, c), lse)


@pytest.mark.parametrize("source, params", HANGS, ids=["tanh_of_bce", "power_in_a_where_test"])
def test_compiles_that_ran_for_minutes(source, params):
    """Shrunk generated losses whose compile ran past 30 s of CPU time (minutes in sympy): each compiles, and
    gives the right value (rows on both sides of the where for the second)."""
    module = lossc.loss(source, reduction="none", **params)
    if "binary" in source:
        x = torch.tensor([-2.0, 0.3, 4.0], dtype=torch.float64)
        t = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    else:
        x = torch.tensor([[-3.0, -3.0, -3.0], [0.5, 1.0, 2.0]], dtype=torch.float64)
        t = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    torch.testing.assert_close(module(x, t), _hang_truth(source, x, t), rtol=1e-12, atol=1e-12)
