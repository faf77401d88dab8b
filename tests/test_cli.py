"""The command line, through a subprocess, as users run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lossc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lossc.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO)


def test_compile_writes_an_importable_module(tmp_path):
    out = tmp_path / "focal_loss.py"
    result = lossc("compile", "catalog/focal.loss", "-o", str(out), "--param", "gamma=0.5")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "class FocalLoss(torch.nn.Module)" in text and "def focal_loss(" in text
    assert "def _params(gamma=0.5)" in text
    again = tmp_path / "again.py"
    lossc("compile", "focal", "-o", str(again), "--param", "gamma=0.5")
    assert again.read_bytes() == out.read_bytes()


def test_compile_structural_param(tmp_path):
    out = tmp_path / "p.py"
    result = lossc("compile", "poly_n", "--param", "eps=0.5,0.25,0.125", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "def _params(N=3, eps=(0.5, 0.25, 0.125))" in out.read_text()


def test_bad_input_exits_2_with_position_caret_and_hint_and_writes_nothing(tmp_path):
    spec = tmp_path / "bad.loss"
    spec.write_text("loss bad() over multiclass:\n    return -log(softmx(z)[y])\n")
    out = tmp_path / "out.py"
    result = lossc("compile", str(spec), "-o", str(out))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"{spec}:2:17: error: unknown function or loss softmx"
    assert lines[1] == "      return -log(softmx(z)[y])"
    assert lines[2] == "                  ^"
    assert lines[3] == "hint: did you mean softmax?"
    assert "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [spec]


@pytest.mark.parametrize("args", [["compile", "no_such_loss"], ["grad", "focal", "--param", "gamma=x"],
                                  ["compile", "focal", "--param", "gamma=-1"], ["catalog", "focla"],
                                  ["compile", "focal", "--param", "nope=1"]])
def test_other_bad_inputs_exit_2(args):
    result = lossc(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "error" in result.stderr


def test_grad_pretty_and_latex():
    result = lossc("grad", "focal")
    assert result.returncode == 0 and "dL/dz_c" in result.stdout and "γ" in result.stdout
    result = lossc("grad", "cross_entropy", "--latex")
    assert result.returncode == 0
    assert "- [j=y] + p[j]" in result.stdout.replace("p_{j}", "p[j]") or "p[j]" in result.stdout


def test_catalog_json_lists_entries_with_citations():
    result = lossc("catalog", "--json")
    assert result.returncode == 0
    entries = json.loads(result.stdout)
    names = {e["name"] for e in entries}
    assert {"cross_entropy", "focal", "poly_n", "bce", "huber"} <= names
    poly = next(e for e in entries if e["name"] == "poly_n")
    assert poly["vector_params"]["eps"]["size"] == "N"
    assert all(e["citation"] and set(e) >= {"name", "kind", "citation", "params", "vector_params"}
               for e in entries)
    one = json.loads(lossc("catalog", "focal", "--json").stdout)
    assert one["params"] == {"gamma": 2.0}


def test_start_up_imports_neither_torch_nor_sympy_for_help_and_torch_not_for_grad():
    """`lossc --help` loads no heavy library and `lossc grad` no torch (start-up time is measured in
    docs/performance.md; here only what is imported, which decides it)."""
    import subprocess
    import sys as _sys
    probe = ("import sys, contextlib, io, lossc.cli as c\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n        c.main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('torch', 'sympy', 'lark', 'jinja2') if m in sys.modules))\n")
    def loaded(*argv):
        out = subprocess.run([_sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]
    assert loaded("--help") == "[]"
    assert loaded("grad", "focal") == "['lark', 'sympy']"


def test_grad_shows_the_loss_as_written_and_stable_shows_the_rewrites(capsys):
    from lossc.cli import main
    assert main(["grad", "focal"]) == 0
    written = capsys.readouterr().out
    assert main(["grad", "focal", "--stable"]) == 0
    stable = capsys.readouterr().out
    assert "logratio" not in written and "log(pₜ)" in written and "logratio" in stable
    assert main(["grad", "nfl", "--latex"]) == 0
    latex = capsys.readouterr().out
    assert r"R_{1} = \sum_{j}" in latex and r"\operatorname{lse}(z)" in latex and "p[j]" not in latex


def _elementwise_gradients(name):
    """(as written, stable) gradients of an elementwise catalog loss as functions of (u, t)."""
    import sympy
    from lossc.ir import T, U
    from lossc.passes.gradient import written_gradient
    import lossc as lc
    spec = lc.parse(name)
    values = {p.symbol: sympy.Float(p.default) for p in spec.params if p.type == "float" and p.default is not None}
    features = dict(spec.features)  # (m = t*u, r = u - t: the gradient is written in them)
    written = written_gradient(spec.written).expr.xreplace(features).xreplace(values)
    stable = spec.gradient.expr.xreplace(features).xreplace(values)
    step = [lambda e: type(e).__name__ == "step", lambda e: sympy.Piecewise((1, e.args[0] > 0), (0, True))]
    return [lambda u, t, e=e: e.replace(*step).xreplace({U: sympy.Float(u, 30), T: sympy.Float(t, 30)}).evalf(30)
            for e in (written, stable)]


@pytest.mark.parametrize("name", ["bce", "sigmoid_focal", "huber", "logistic", "smooth_hinge", "log_cosh",
                                  "poisson_nll", "pseudo_huber"])
def test_the_written_gradient_is_the_gradient(name):
    """What `lossc grad` shows (the gradient of the loss as written, no rewrites) is the gradient lossc
    computes (after its stable rewrites): the same function, at moderate inputs where both are exact."""
    import random

    import lossc as lc
    written, stable = _elementwise_gradients(name)
    kind = lc.parse(name).kind
    rng = random.Random(name)
    for _ in range(20):
        u = rng.uniform(0.05, 4) if name == "poisson_nll" else rng.uniform(-4, 4)
        t = {"binary": rng.choice((0.0, 1.0, rng.random())), "margin": rng.choice((-1.0, 1.0))}.get(
            kind, rng.uniform(-3, 3) if name != "poisson_nll" else rng.uniform(0, 3))
        a, b = complex(written(u, t)), complex(stable(u, t))
        assert abs(a - b) <= 1e-12 * (1 + abs(b)), (name, u, t, a, b)
