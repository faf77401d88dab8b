"""``lossc plot``: the curves it draws (against closed forms) and the file it writes."""

import builtins

import pytest
import torch

import lossc
from lossc.cli import main
from lossc.kinds.multiclass import CLASSES
from lossc.plot import curve, plot


def test_multiclass_curve_is_cross_entropy_against_p_t():
    c = curve("cross_entropy", points=41)
    assert c.kind == "multiclass"
    torch.testing.assert_close(c.loss, -torch.log(c.x))
    torch.testing.assert_close(c.grad, c.x - 1)  # dL/dz_y = p_t - 1
    assert 0 < float(c.x.min()) < 1e-3 and 0.99 < float(c.x.max()) < 1  # target logit -8..8, C = 10
    assert CLASSES == 10


def test_margin_binary_regression_curves():
    hinge = curve("hinge", points=13)
    torch.testing.assert_close(hinge.loss, torch.clamp(1 - hinge.x, min=0))
    mse = curve("mse", points=13)  # r = y - yhat: dL/dyhat = -2 r
    torch.testing.assert_close(mse.loss, mse.x**2)
    torch.testing.assert_close(mse.grad, -2 * mse.x)
    bce = curve("bce", points=13)  # y = 1: softplus(-f)
    torch.testing.assert_close(bce.grad, torch.sigmoid(bce.x) - 1)


def test_distribution_curve_is_kl_to_the_soft_target():
    c = curve("kl_div", points=21)  # C = 2, z = (s, 0), q = (0.9, 0.1)
    q = torch.tensor([0.9, 0.1], dtype=torch.float64)
    p = torch.stack([c.x, 1 - c.x], 1)
    torch.testing.assert_close(c.loss, (q * (q.log() - p.log())).sum(1))
    torch.testing.assert_close(c.grad, c.x - 0.9)  # dL/dz_0 = p_0 - q_0


def test_per_class_parameter_losses_are_drawn_at_their_defaults():
    la = curve("logit_adjusted", points=11)  # uniform prior: cross-entropy
    torch.testing.assert_close(la.loss, -torch.log(la.x))
    assert curve("ldam", points=11).kind == "multiclass"


def test_batch_curve_varies_one_positive_of_a_small_batch():
    c = curve("anyloss_f1", points=11)  # batch of 8: three other positives at 0.9, four negatives at 0.1
    assert c.x[0] == 0 and c.x[-1] == 1
    assert float(c.loss[0]) == pytest.approx(1 / 7, rel=1e-3)  # TP = 3, FN = 1: F1 = 6/7
    assert float(c.loss[-1]) == pytest.approx(0, abs=1e-6)
    assert bool((c.grad <= 1e-12).all())  # a higher prediction for a positive never hurts


def test_tasks_curve_varies_the_first_learnable():
    c = curve("uncertainty_weighting", points=13)  # L1 = L2 = 1, s2 = 0
    torch.testing.assert_close(c.loss, torch.exp(-c.x) / 2 + c.x / 2 + 0.5)
    torch.testing.assert_close(c.grad, -torch.exp(-c.x) / 2 + 0.5)


def test_params_apply_to_the_losses_that_have_them():
    focal = curve("focal", {"gamma": 0, "tau": 0.9}, points=21)  # gamma = 0 is cross-entropy; tau ignored
    torch.testing.assert_close(focal.loss, -torch.log(focal.x))
    assert focal.label == "focal (gamma=0)"
    assert curve("quantile", {"tau": 0.9}, points=5).loss[0] == pytest.approx(0.1 * 3)  # r = -3


@pytest.mark.parametrize("specs", [["kl_div", "soft_cross_entropy"], ["anyloss_f1", "anyloss_mcc"],
                                   ["uncertainty_weighting"], ["ldam", "logit_adjusted"]])
def test_cli_draws_every_kind(tmp_path, specs):
    pytest.importorskip("matplotlib")
    out = tmp_path / "fig.png"
    assert main(["plot", *specs, "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_one_png_atomically(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "fig.png"
    assert main(["plot", "focal", "cross_entropy", "poly1", "--param", "gamma=1", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temporary file left


@pytest.mark.parametrize("args, message", [
    (["focal", "hinge"], "one kind per figure"),
    (["kl_div", "focal"], "one kind per figure"),
    (["focal", "--param", "tau=0.5"], "no loss given has a parameter tau"),
    (["focal", "--param", "gamma=-1"], "gamma"),
    (["focl"], "did you mean focal?"),
])
def test_cli_errors_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    pytest.importorskip("matplotlib")
    out = tmp_path / "fig.png"
    assert main(["plot", *args, "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_missing_matplotlib_is_a_loss_error(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(lossc.LossError, match="needs matplotlib") as info:
        plot(["focal"], str(tmp_path / "fig.png"))
    assert "lossc[plot]" in info.value.hint
