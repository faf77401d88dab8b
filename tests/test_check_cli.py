"""`lossc check` through a subprocess: the table, --json, --require and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lossc(*args):
    return subprocess.run([sys.executable, "-m", "lossc.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "LOSSC_NO_CACHE": "1"})


def test_json_report_shape():
    out = lossc("check", "hinge", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["loss"] == "hinge" and data["kind"] == "margin" and data["params"] == {}
    assert set(data["properties"]) == {"convex", "calibrated", "proper", "symmetric", "bounded", "monotone",
                                       "smooth", "nonnegative", "stable"}
    assert data["properties"]["convex"]["verdict"] == "proved"
    assert data["properties"]["smooth"]["verdict"] == "refuted"
    assert "counterexample" in data["properties"]["smooth"]


def test_params_are_used_and_reported():
    out = lossc("check", "poly1", "--param", "eps=-2", "--json")
    data = json.loads(out.stdout)
    assert data["params"] == {"eps": -2}
    assert data["properties"]["monotone"]["verdict"] == "refuted"


def test_table():
    out = lossc("check", "cross_entropy")
    assert out.returncode == 0
    for word in ("convex", "proved", "refuted", "stable", "z[y]"):
        assert word in out.stdout


def test_require_exit_codes():
    assert lossc("check", "hinge", "--require", "convex,calibrated").returncode == 0
    out = lossc("check", "hinge", "--require", "convex,smooth")
    assert out.returncode == 1 and "smooth (refuted)" in out.stderr


def test_bad_input_exits_2():
    assert lossc("check", "no_such_loss").returncode == 2
    assert lossc("check", "focal", "--param", "gamma=-1").returncode == 2
    assert lossc("check", "focal", "--param", "beta=1").returncode == 2
    out = lossc("check", "hinge", "--require", "convexity")
    assert out.returncode == 2 and "convexity" in out.stderr


def test_scratch_file(tmp_path):
    spec = tmp_path / "mine.loss"
    spec.write_text("loss mine() over margin:\n    return softplus(-m) + 0.5 * pos(1 - m)\n")
    data = json.loads(lossc("check", str(spec), "--json").stdout)
    assert data["properties"]["convex"]["verdict"] == "proved"
    assert data["properties"]["calibrated"]["verdict"] == "proved"
