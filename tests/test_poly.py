"""PolyLoss coefficients (Leng et al. 2022): lossc.poly and `lossc poly`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy

import lossc
from lossc import LossError

os.environ.setdefault("LOSSC_NO_CACHE", "1")
REPO = Path(__file__).resolve().parents[1]
R = sympy.Rational


def test_cross_entropy_is_sum_of_x_to_the_j_over_j():
    assert lossc.poly("cross_entropy", order=8) == {j: R(1, j) for j in range(1, 9)}


def test_coefficients_are_exact_rationals():
    coeffs = lossc.poly("gce", order=4, q=0.7)
    assert all(isinstance(a, sympy.Rational) for a in coeffs.values())
    assert coeffs == {1: 1, 2: R(3, 20), 3: R(13, 200), 4: R(299, 8000)}  # (1 - (1 - x)^q) / q


def test_focal_integer_gamma_shifts_the_series():
    assert lossc.poly("focal", order=6, gamma=2.0) == {1: 0, 2: 0, 3: 1, 4: R(1, 2), 5: R(1, 3), 6: R(1, 4)}


def test_focal_non_integer_gamma_expands_in_x_to_the_j_plus_gamma():
    from lossc.check import poly_expansion
    e = poly_expansion("focal", order=3, gamma=0.5)
    assert not e["integer"]
    assert e["coefficients"] == {R(3, 2): 1, R(5, 2): R(1, 2), R(7, 2): R(1, 3)}


def test_poly1_is_cross_entropy_plus_eps_x():
    coeffs = lossc.poly("poly1", order=4, eps=2.0)
    assert coeffs == {1: 3, 2: R(1, 2), 3: R(1, 3), 4: R(1, 4)}


def test_poly_n_perturbs_the_first_n_coefficients():
    coeffs = lossc.poly("poly_n", order=4, eps=[0.5, -0.25, 0.125])
    assert coeffs == {1: R(3, 2), 2: R(1, 4), 3: R(11, 24), 4: R(1, 4)}


def test_taylor_ce_is_the_truncated_series():
    assert lossc.poly("taylor_ce", order=5, t=3) == {1: 1, 2: R(1, 2), 3: R(1, 3), 4: 0, 5: 0}


def test_focal_poly1_perturbs_the_leading_focal_term():
    assert lossc.poly("focal_poly1", order=4, gamma=2.0, eps=1.0) == {1: 0, 2: 0, 3: 2, 4: R(1, 2)}


def test_mae_and_rce_are_first_order():
    assert lossc.poly("mae", order=3) == {1: 2, 2: 0, 3: 0}


def test_leading_gradient_terms():
    from lossc.check import poly_expansion
    assert poly_expansion("cross_entropy", 4)["leading_gradient"] == "1"
    assert poly_expansion("focal", 4, gamma=2.0)["leading_gradient"] == "3*(1 - p_t)**2"  # (1 + gamma) x^gamma


@pytest.mark.parametrize("name", ["label_smoothing", "squentropy", "nce", "brier", "hinge", "mse"])
def test_losses_not_of_p_t_alone_get_a_clear_error(name):
    with pytest.raises(LossError, match="p_t alone|multiclass"):
        lossc.poly(name, order=3)


def test_bad_order():
    with pytest.raises(LossError):
        lossc.poly("cross_entropy", order=0)


def lossc_cli(*args):
    return subprocess.run([sys.executable, "-m", "lossc.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "LOSSC_NO_CACHE": "1"})


def test_cli_poly_json():
    out = lossc_cli("poly", "focal", "--order", "4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["coefficients"] == {"1": "0", "2": "0", "3": "1", "4": "1/2"}
    assert data["leading_gradient"] == "3*(1 - p_t)**2"


def test_cli_poly_table_and_error():
    out = lossc_cli("poly", "cross_entropy", "--order", "3")
    assert out.returncode == 0 and "1/3" in out.stdout
    bad = lossc_cli("poly", "label_smoothing")
    assert bad.returncode == 2 and "p_t alone" in bad.stderr
