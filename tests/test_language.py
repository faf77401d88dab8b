"""Language and CLI defects found from outside (issue 12): each with the input that showed it, checked
against a hand-written float64 reference where it computes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lossc
from lossc.cli import main

MULTI = '''\ufeff"""Three losses in one file, with a byte order mark."""
loss plain over binary:
    return softplus(-f) + (1 - y) * f

loss hub(d = 1.0, s = 2.0) over regression:
    return s * where(abs(r) < d, r^2 / 2, d * (abs(r) - d / 2))

loss both over regression:
    return hub(0.5, 3.0) + hub(0.5, s = 1.0)
'''


def _huber(r, d, s):
    return s * torch.where(r.abs() < d, r ** 2 / 2, d * (r.abs() - d / 2))


def _value_and_grad(module, x, y):
    x = x.clone().requires_grad_(True)
    value = module(x, y)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def test_a_where_on_a_parameter_alone_prints_and_computes():
    """where(k > 0, ...) with k a parameter: the torch printer recursed forever on the condition."""
    src = "loss w(k = 1.0) over regression:\n    return where(k > 0, r^2, abs(r)) + where(k > 1 and r > 0, r, 0)\n"
    for target in ("torch", "all"):
        compile(lossc.generate(src, target=target), "<generated>", "exec")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    for k in (-1.0, 0.5, 2.0):
        xr = x.clone().requires_grad_(True)
        r = y - xr
        ref = ((r ** 2 if k > 0 else r.abs()) + (torch.where(r > 0, r, 0.0) if k > 1 else 0)).mean()
        (ref_grad,) = torch.autograd.grad(ref, xr)
        for backend in ("torch", "reference"):
            value, grad = _value_and_grad(lossc.loss(src, backend=backend, k=k), x, y)
            torch.testing.assert_close(value, ref.detach())
            torch.testing.assert_close(grad, ref_grad)


def test_a_tasks_loss_without_parameters_compiles():
    module = lossc.loss("loss tk over tasks:\n    learn s = 0.25\n    return exp(-s) * L1 + s\n")
    l1 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    value = module(l1)
    value.backward()
    s = torch.tensor(0.25, dtype=torch.float64)
    torch.testing.assert_close(value.detach(), torch.exp(-s) * 2.0 + s)
    torch.testing.assert_close(l1.grad, torch.exp(-s))
    compile(lossc.generate("loss tk() over tasks:\n    return L1 + L2\n"), "<generated>", "exec")


def test_header_without_parentheses_and_several_losses_by_name(tmp_path):
    path = tmp_path / "multi.loss"
    path.write_text(MULTI, encoding="utf-8")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(25, generator=g, dtype=torch.float64) * 2, torch.randn(25, generator=g, dtype=torch.float64)
    # the last loss is the file's main one; the others by path.loss:name or name=
    assert lossc.parse(str(path)).name == "both"
    assert lossc.parse(f"{path}:plain").name == "plain"
    assert lossc.parse(str(path), name="hub").name == "hub"
    assert lossc.parse(MULTI, name="plain").name == "plain"  # source text too
    expected = (_huber(y - x, 0.5, 3.0) + _huber(y - x, 0.5, 1.0)).mean()
    for spec, name in ((str(path), None), (f"{path}:both", None), (MULTI, "both")):
        value, _ = _value_and_grad(lossc.loss(spec, name=name, backend="torch"), x, y)
        torch.testing.assert_close(value, expected)
    value, _ = _value_and_grad(lossc.loss(f"{path}:hub", backend="torch", d=0.25, s=1.5), x, y)
    torch.testing.assert_close(value, _huber(y - x, 0.25, 1.5).mean())
    labels = (torch.rand(25, generator=g) > 0.5).double()
    value, _ = _value_and_grad(lossc.loss(str(path), name="plain", backend="torch"), x, labels)
    torch.testing.assert_close(value, F.binary_cross_entropy_with_logits(x, labels))
    with pytest.raises(lossc.LossNameError, match="no loss nope"):
        lossc.parse(f"{path}:nope")
    with pytest.raises(lossc.LossNameError, match="no loss nope"):
        lossc.loss(str(path), name="nope")
    with pytest.raises(lossc.LossParamError, match="bare expression"):
        lossc.parse("pos(1 - m)", over="margin", name="x")


def test_loss_calls_take_several_positional_arguments():
    spec = lossc.parse(MULTI, name="both")
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(40, generator=g, dtype=torch.float64) * 2, torch.randn(40, generator=g, dtype=torch.float64)
    value, grad = _value_and_grad(lossc.loss(spec, backend="torch"), x, y)
    xr = x.clone().requires_grad_(True)
    ref = (_huber(y - xr, 0.5, 3.0) + _huber(y - xr, 0.5, 1.0)).mean()
    (ref_grad,) = torch.autograd.grad(ref, xr)
    torch.testing.assert_close(value, ref.detach())
    torch.testing.assert_close(grad, ref_grad)
    for call, message in (("hub(0.5, d = 1.0)", "given twice"), ("hub(d = 0.5, 2.0)", "after a keyword"),
                          ("hub(1, 2, 3)", "at most 2")):
        text = MULTI.replace("hub(0.5, 3.0)", call)
        with pytest.raises(lossc.LossSyntaxError, match=message) as info:
            lossc.parse(text, name="both")
        assert info.value.line == 9


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.loss"
    path.write_bytes(b"\xef\xbb\xbfloss bom() over margin:\n    return pos(1 - m)\n")
    assert lossc.parse(str(path)).name == "bom"
    assert main(["compile", str(path), "-o", str(tmp_path / "bom_loss.py")]) == 0


def test_compile_to_a_missing_folder_is_a_clean_error(tmp_path, capsys):
    out = tmp_path / "missing" / "x.py"
    assert main(["compile", "focal", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no folder" in err and "Traceback" not in err
    assert not (tmp_path / "missing").exists()
    assert main(["compile", "focal", "-o", str(tmp_path)]) == 2  # a folder, not a file
    assert list(tmp_path.iterdir()) == []


def test_the_cli_picks_a_loss_of_a_file(tmp_path):
    path = tmp_path / "multi.loss"
    path.write_text(MULTI, encoding="utf-8")
    out = tmp_path / "hub_loss.py"
    assert main(["compile", f"{path}:hub", "-o", str(out)]) == 0
    assert "class HubLoss" in out.read_text()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import torch, hub_loss\n"
            "x = torch.zeros(3, dtype=torch.float64); y = torch.tensor([0.5, 2.0, -3.0], dtype=torch.float64)\n"
            "print(float(hub_loss.HubLoss(d=1.0, s=2.0)(x, y)))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                            env={**os.environ})
    assert result.returncode == 0, result.stderr
    r = torch.tensor([0.5, 2.0, -3.0], dtype=torch.float64)
    assert abs(float(result.stdout) - float(_huber(r, 1.0, 2.0).mean())) < 1e-12


# Front-end budgets: every text either compiles or fails with a LossError that has a position; limits are
# sizes (characters, operations, digits), never the clock, so the outcome is the same on any machine.

def _compiles_or_clean_error(text: str):
    """The generated module's text, or the LossError (with a line and a column) the text raised."""
    try:
        return lossc.generate(text)
    except lossc.LossError as err:
        assert err.line is not None and err.column is not None, err.message
        assert 1 <= err.line <= text.count("\n") + 1
        return err


@pytest.mark.parametrize("body, message", [
    ("r * 2**1024", "out of range"),
    ("r * 10^400", "out of range"),
    ("r * 1e308*10", "out of range"),
    ("r^2 * (-1)^0.5", "not real"),  # sympy's I: the loss was 0 (its real part) without a word
    ("r * sqrt(-4)", "not real"),
    ("r * (-8)^(1/3)", "not real"),  # sympy's principal cube root is complex
    ("r + log(-1)", "not real"),
])
def test_constants_are_real_and_finite(body, message):
    err = _compiles_or_clean_error(f"loss a() over regression:\n    return {body}\n")
    assert isinstance(err, lossc.LossSyntaxError) and message in err.message
    assert (err.line, err.column) >= (2, 12)


def test_large_but_finite_constants_compile():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(10, generator=g, dtype=torch.float64), torch.randn(10, generator=g, dtype=torch.float64)
    value, _ = _value_and_grad(lossc.loss("loss a() over regression:\n    return r^2" + " * 1.0001" * 1000 + "\n",
                                          backend="torch"), x, y)
    torch.testing.assert_close(value, ((y - x) ** 2).mean() * 1.0001 ** 1000)
    assert isinstance(_compiles_or_clean_error("loss a() over regression:\n    return abs(r)^1.797e308\n"), str)
    assert isinstance(_compiles_or_clean_error("loss a() over regression:\n    return r * 1e308 * 1.5\n"), str)


def test_chains_of_locals_are_bounded_by_their_size():
    """a_k = a_(k-1)^2 + a_(k-1) doubles the loss at every line (a local is copied into each use): refused
    at the line that crosses the limit, instead of running for minutes."""
    doubling = "loss a() over regression:\n    a1 = r\n" + "".join(
        f"    a{i} = a{i - 1}^2 + a{i - 1}\n" for i in range(2, 23)) + "    return a22\n"
    err = _compiles_or_clean_error(doubling)
    assert isinstance(err, lossc.LossSyntaxError) and "too large" in err.message and 3 < err.line < 23
    linear = "loss a() over regression:\n    a1 = r\n" + "".join(
        f"    a{i} = a{i - 1}^2 + 1\n" for i in range(2, 23)) + "    return log1p(abs(a22))\n"
    assert isinstance(_compiles_or_clean_error(linear), (str, lossc.LossError))


def test_nested_functions_around_a_catalog_loss_compile():
    text = "loss a() over multiclass:\n    return " + "tanh(" * 9 + "z_loss()" + ")" * 9 + "\n"
    assert isinstance(_compiles_or_clean_error(text), str)


def test_a_text_too_long_is_refused_by_its_size():
    text = "loss a() over regression:\n    return " + " + ".join(["r"] * 100_000) + "\n"  # 400 kB
    err = _compiles_or_clean_error(text)
    assert isinstance(err, lossc.LossSyntaxError) and "too long" in err.message and err.line == 2


def test_abs_of_a_difference_not_provably_real_compiles_and_computes():
    """abs(max(r, y)^c - q / yhat) was refused, "expression nested too deeply": atoms.Abs evaluated sympy's
    Abs on real stand-ins for max(r, y)^c and 1/yhat, which normalized the sign of the difference in the
    stand-ins' order of terms; mapped back, abs(a - b) became abs(b - a), whose stand-ins flipped it back,
    without end (in the gradient pass, where max(r, y)^c is a _power)."""
    src = "loss a(c = 0.5, q = 0.37) over regression:\n    return abs((max(r, y))^(c) - (q / yhat))\n"
    g = torch.Generator().manual_seed(5)
    x = torch.rand(16, generator=g, dtype=torch.float64) + 0.5
    y = torch.rand(16, generator=g, dtype=torch.float64) + 0.5
    for backend in ("reference", "torch"):
        value, grad = _value_and_grad(lossc.loss(src, backend=backend), x, y)
        xr = x.clone().requires_grad_(True)
        want = (torch.maximum(y - xr, y) ** 0.5 - 0.37 / xr).abs().mean()
        (want_grad,) = torch.autograd.grad(want, xr)
        torch.testing.assert_close(value, want.detach())
        torch.testing.assert_close(grad, want_grad)


@pytest.mark.parametrize("body", ["pos(log_softmax(z / p)[y])^(b)", "max(log_softmax(z / p)[y], 0)^(b)",
                                  "clamp(log_softmax(z / p)[y], 0, 1)^(b)"])
def test_a_zeroth_power_of_a_clamped_log_softmax_compiles(body):
    """pos(log_softmax(z / p)[y])^b at b = 0 was refused, "The argument 'nan' is not comparable": simplify's
    numeric probes of the gradient's Ne(pos(x), 0) made sympy's Max(nan, 0). Min / Max of NaN is NaN; the
    loss is x^0 = 1, its gradient 0."""
    src = f"loss a(p = 2.0, b = 0.0) over multiclass:\n    return {body}\n"
    x = torch.tensor([[0.0, 0.0], [3.0, -1.0], [-2.0, 5.0]], dtype=torch.float64)
    for backend in ("reference", "torch"):
        value, grad = _value_and_grad(lossc.loss(src, backend=backend, reduction="sum"), x, torch.tensor([0, 0, 1]))
        torch.testing.assert_close(value, torch.tensor(3.0, dtype=torch.float64))
        torch.testing.assert_close(grad, torch.zeros_like(x))
