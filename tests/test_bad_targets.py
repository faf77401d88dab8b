"""Bad targets and class vectors raise a LossError naming the problem, before any kernel runs, on every
backend; ``validate=False`` switches the value checks off (shapes and dtypes are always checked)."""

from __future__ import annotations

import pytest
import torch

import lossc

BACKENDS = ["torch", "reference", "triton"]


def _run(name, x, t, backend, **options):
    if backend == "triton":
        pytest.importorskip("triton")
        x = x.float()
    return lossc.loss(name, backend=backend, **options)(x.requires_grad_(True), t)


MULTICLASS_BAD = {
    "index too large": (torch.tensor([0, 5, 1]), "class index 5, outside \\[0, 5\\)"),
    "negative index": (torch.tensor([0, -3, 1]), "class index -3"),
    "float target": (torch.tensor([0.0, 1.0, 2.0]), "integer tensor"),
    "wrong shape": (torch.tensor([0, 1]), "target must have shape \\[3\\]"),
    "one-hot target": (torch.eye(5)[:3].long(), "target must have shape"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(MULTICLASS_BAD))
def test_multiclass_targets(case, backend):
    t, message = MULTICLASS_BAD[case]
    with pytest.raises(lossc.LossError, match=message):
        _run("focal", torch.randn(3, 5, dtype=torch.float64), t, backend)


ELEMENTWISE_BAD = {
    ("bce", "nan"): (torch.tensor([0.0, float("nan"), 1.0]), "NaN"),
    ("bce", "outside [0, 1]"): (torch.tensor([0.0, 2.0, 1.0]), "2.0"),
    ("hinge", "not a sign"): (torch.tensor([1.0, 0.0, -1.0]), "0.0"),
    ("mse", "nan"): (torch.tensor([0.5, float("nan"), 1.0]), "NaN"),
    ("mse", "wrong shape"): (torch.tensor([0.5, 1.0]), "input's shape"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, case", list(ELEMENTWISE_BAD))
def test_elementwise_targets(name, case, backend):
    t, message = ELEMENTWISE_BAD[(name, case)]
    with pytest.raises(lossc.LossError, match=message):
        _run(name, torch.randn(3, dtype=torch.float64), t.double(), backend)


DISTRIBUTION_BAD = {
    "nan": (lambda q: q.index_fill(0, torch.tensor([1]), float("nan")), "NaN"),
    "negative": (lambda q: q - 0.5, "negative"),
    "index targets": (lambda q: q.argmax(1), "probabilities"),
    "wrong shape": (lambda q: q[:, :4], "probabilities"),
}


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("case", list(DISTRIBUTION_BAD))
def test_distribution_targets(case, backend):
    make, message = DISTRIBUTION_BAD[case]
    q = torch.softmax(torch.randn(3, 5, dtype=torch.float64), 1)
    with pytest.raises(lossc.LossError, match=message):
        _run("soft_cross_entropy", torch.randn(3, 5, dtype=torch.float64), make(q), backend)


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_class_vectors_must_match_the_classes(backend):
    x, t = torch.randn(3, 5, dtype=torch.float64), torch.tensor([0, 1, 2])
    with pytest.raises(lossc.LossError, match="per-class parameter prior has 4 values"):
        _run("logit_adjusted", x, t, backend, prior=torch.rand(4))
    with pytest.raises(lossc.LossError, match="weight has 3 values"):
        _run("label_smoothing", x, t, backend, weight=torch.rand(3))
    with pytest.raises(lossc.LossError, match="one value per class"):
        lossc.loss("logit_adjusted", prior=torch.rand(2, 5))


def test_validate_false_skips_the_value_checks():
    """The value checks cost a pass over the targets (and a device sync on a GPU): validate=False skips
    them, and the loss computes what the formula gives for such targets."""
    x, t = torch.randn(3, dtype=torch.float64), torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    with pytest.raises(lossc.LossError):
        lossc.loss("hinge")(x, t)
    value = lossc.loss("hinge", validate=False, reduction="none")(x, t)
    torch.testing.assert_close(value, torch.relu(1 - t * x))
    q = torch.tensor([[0.5, 0.7, -0.2]], dtype=torch.float64)  # not a distribution: computed as given
    z = torch.randn(1, 3, dtype=torch.float64)
    value = lossc.loss("soft_cross_entropy", validate=False, reduction="none")(z, q)
    torch.testing.assert_close(value, -(q * torch.log_softmax(z, 1)).sum(1))


def test_shape_and_dtype_are_checked_even_without_validation():
    with pytest.raises(lossc.LossError, match="integer tensor"):
        lossc.loss("focal", validate=False)(torch.randn(3, 5), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(lossc.LossError, match="input's shape"):
        lossc.loss("mse", validate=False)(torch.randn(3), torch.randn(4))


@pytest.mark.parametrize("name", ["bce", "mse"])
def test_an_elementwise_weight_that_does_not_broadcast_is_a_loss_error(name):
    target = torch.randint(0, 2, (5,)).double()
    with pytest.raises(lossc.LossInputError, match="weight must broadcast"):
        lossc.loss(name, weight=torch.ones(3))(torch.rand(5, dtype=torch.float64), target)
