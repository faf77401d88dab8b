"""The tasks kind: uncertainty weighting (Kendall, Gal & Cipolla 2018) against the hand-written reference,
its learnable parameters (gradients, an optimizer step), how the module takes the task losses, and errors."""

from __future__ import annotations

import pytest
import torch

import lossc
from references import TASKS_REFERENCES

REF = TASKS_REFERENCES["uncertainty_weighting"]


@pytest.mark.parametrize("K", [2, 3])
def test_value_and_gradients_match_the_reference(K):
    module = lossc.loss("uncertainty_weighting", K=K).double()
    with torch.no_grad():
        module.learned["s"].copy_(torch.linspace(-0.7, 1.1, K, dtype=torch.float64))
    s_ref = module.learned["s"].detach().clone().requires_grad_(True)
    losses = [torch.tensor(0.3 + i, dtype=torch.float64, requires_grad=True) for i in range(K)]
    losses_ref = [l.detach().clone().requires_grad_(True) for l in losses]
    value = module(*losses)
    expected = REF.fn(losses_ref, s_ref)
    (value * 1.7).backward()
    (expected * 1.7).backward()
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(module.learned["s"].grad, s_ref.grad, rtol=1e-12, atol=0)
    for got, exp in zip(losses, losses_ref):
        torch.testing.assert_close(got.grad, exp.grad, rtol=1e-12, atol=0)


def test_the_learnables_are_parameters_and_an_optimizer_step_moves_them():
    module = lossc.loss("uncertainty_weighting", K=2)
    params = list(module.parameters())
    assert len(params) == 1 and params[0].shape == (2,) and torch.all(params[0] == 0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module(torch.tensor(4.0), torch.tensor(0.5)).backward()
    # d/ds_i = (1 - L_i exp(-s_i)) / 2 at s = 0: -1.5 and 0.25
    torch.testing.assert_close(params[0].grad, torch.tensor([-1.5, 0.25]))
    optimizer.step()
    torch.testing.assert_close(params[0].detach(), torch.tensor([0.15, -0.025]))
    # at the optimum s_i = log L_i the gradient vanishes
    with torch.no_grad():
        params[0].copy_(torch.log(torch.tensor([4.0, 0.5])))
    params[0].grad = None
    module(torch.tensor(4.0), torch.tensor(0.5)).backward()
    assert float(params[0].grad.abs().max()) < 1e-6


def test_the_task_losses_as_arguments_a_sequence_or_a_tensor():
    module = lossc.loss("uncertainty_weighting", K=3)
    a, b, c = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)
    expected = module(a, b, c)
    torch.testing.assert_close(module([a, b, c]), expected)
    torch.testing.assert_close(module(torch.stack([a, b, c])), expected)
    torch.testing.assert_close(expected, torch.tensor(3.0))  # s = 0: sum(L) / 2
    with pytest.raises(lossc.LossError, match="takes 3 task losses"):
        module(a, b)
    with pytest.raises(lossc.LossError, match="scalar"):
        module(a, b, torch.ones(2))


def test_scalar_learnables_and_named_task_losses():
    text = ("loss two(w0 = 1.0) over tasks:\n"
            "    learn s = 0.5\n"
            "    return w0 * exp(-s) * L1 + L2 + s\n")
    module = lossc.loss(text)
    (name, p), = module.named_parameters()
    assert p.shape == () and float(p.detach()) == 0.5
    value = module(torch.tensor(2.0), torch.tensor(3.0))
    torch.testing.assert_close(value, torch.tensor(2.0 * torch.exp(torch.tensor(-0.5)).item() + 3.5))


@pytest.mark.parametrize("text, match", [
    ("loss t() over tasks:\n    return 1.0\n", "task losses"),
    ("loss t() over tasks:\n    return L\n", "index it"),
    ("loss t(K = 2) over tasks:\n    learn s[K] = 0.0\n    return L1 * s\n", "learnable vector"),
    ("loss t(K = 2) over tasks:\n    learn s[K] = 0.0\n    return L1 * s[3]\n", "out of range"),
    ("loss t() over tasks:\n    learn s = [1, 2]\n    return L1 * s\n", "one number"),
])
def test_language_errors(text, match):
    with pytest.raises(lossc.LossError, match=match):
        lossc.parse(text)


def test_check_and_compile_handle_the_tasks_kind(tmp_path):
    report = lossc.check("uncertainty_weighting")
    assert report["convex"].verdict == "unknown" and report["calibrated"].verdict == "n/a"
    assert all(v.verdict != "proved" for v in report.values())
    from lossc.cli import main
    out = tmp_path / "uw.py"
    assert main(["compile", "uncertainty_weighting", "-o", str(out), "--target", "all"]) == 0
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)
    module = namespace["UncertaintyWeightingLoss"]()
    torch.testing.assert_close(module(torch.tensor(1.0), torch.tensor(3.0)), torch.tensor(2.0))
