"""Generated losses (tests/genloss.py) against their mpmath truth, on every kind and backend.

A fixed-seed budget: each case generates one loss of a kind, draws one call (random, saturated, tied and
exact-zero inputs, every reduction, grad_output != 1, weights now and then: tests/gencheck.py) and compares
the backend's value and input gradient, in float64, float32 and bfloat16 (triton: float32 and bfloat16,
under TRITON_INTERPRET=1 without a GPU), with the truth. Constructs of known defects tracked elsewhere
(``gencheck.avoid_for``) are left out here; scripts/fuzz_backends.py runs them, and their shrunk fixtures
replay in tests/test_generated_fixtures.py. Longer runs: ``scripts/fuzz_backends.py --minutes N``.
"""

from __future__ import annotations

import importlib.util
import math
import random

import pytest
import torch

import lossc
import gencheck as K
import genloss as G

SEEDS = {"reference": 14, "torch": 16, "triton": 5}
CASES = [(kind, backend, seed) for kind in G.KINDS for backend in K.BACKENDS for seed in range(SEEDS[backend])]


@pytest.mark.parametrize("kind,backend,seed", CASES)
def test_generated_loss_matches_truth(kind, backend, seed):
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    rng = random.Random(f"ci-{kind}-{backend}-{seed}")
    loss = G.generate(kind, rng, avoid=K.avoid_for(backend))
    case = K.make_case(loss, rng, small=(backend == "triton"))
    for dtype in K.dtypes_for(backend):
        mismatches = K.check(loss, case, backend, dtype)
        assert not mismatches, f"{loss.source}\n{case}\n{mismatches[:3]}"


def test_the_generator_is_deterministic_and_draws_the_whole_language():
    a = [G.generate(k, random.Random(7)).source for k in G.KINDS]
    b = [G.generate(k, random.Random(7)).source for k in G.KINDS]
    assert a == b
    text = "\n".join(G.generate(k, random.Random(f"{k}-{i}")).source for k in G.KINDS for i in range(60))
    for construct in ("where(", "clamp(", "pos(", "abs(", "min(", "max(", "^(", "log(", "exp(", "sqrt(", "log1p(",
                      "expm1(", "softplus(", "sigmoid(", "tanh(", "sin(", "cos(", "atan(", "acos(", "sinh(", "cosh(",
                      "lgamma(", "digamma(", "detach(", "for j)", "for j != y)", "logsumexp(",
                      "mean(", "softmax(z)[j]", "log_softmax(z)[y]", "p_t", "(j == y)", "for i)", "[C] = ",
                      "=", "focal(", "huber(", "anyloss_f1("):
        assert construct in text, construct


def test_the_truth_is_independent_and_exact_on_known_values():
    """The truth of a few losses whose values and gradients are known in closed form."""
    ce = G.GeneratedLoss("multiclass", "ce", (), (), G.Node("call", (), ("cross_entropy", ())))
    t = ce.row_truth({"z": [0.0, 0.0, 0.0], "y": 1})
    assert abs(float(t.value) - 1.0986122886681098) < 1e-15
    assert [round(float(g), 15) for g in t.grad] == [round(1 / 3, 15), round(1 / 3 - 1, 15), round(1 / 3, 15)]
    hinge = G.GeneratedLoss("margin", "h", (), (), G.Node("call", (), ("hinge", ())))
    at_kink = hinge.row_truth({"x": 1.0, "y": 1.0})
    assert float(at_kink.value) == 0.0 and at_kink.kinked == [True]  # one-sided slopes -1 and 0: not compared
    smooth = hinge.row_truth({"x": 0.5, "y": 1.0})
    assert smooth.kinked == [False] and abs(float(smooth.grad[0]) + 1.0) < 1e-25
    detached = G.GeneratedLoss("regression", "d", (), (), G.fn("detach", G.bin_("pow", G.leaf("r"), G.num("2"))))
    assert float(detached.row_truth({"x": 0.0, "y": 3.0}).grad[0]) == 0.0
    assert float(detached.row_truth({"x": 0.0, "y": 3.0}).value) == 9.0


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("kind,variable", [("binary", "f"), ("regression", "r"), ("multiclass", "z[y]")])
def test_nested_where_in_a_condition(kind, backend, variable):
    """A where whose condition compares another where: the torch engine gave its bool a float buffer
    ('Expected out type to be Bool but got Double'); found by the generator."""
    cond = G.Node("cmp", (G.where(G.leaf({"f": "f", "r": "r", "z[y]": "zy"}[variable]), "<=", G.num("0"),
                                   G.leaf("y") if kind != "multiclass" else G.leaf("pt"),
                                   G.leaf({"f": "f", "r": "r", "z[y]": "zy"}[variable])),
                           G.num("0.5")), "<=")
    v = G.leaf({"f": "f", "r": "r", "z[y]": "zy"}[variable])
    loss = G.GeneratedLoss(kind, "nested", (), (), G.Node("where", (cond, v, G.bin_("mul", G.num("2"), v))))
    assert loss.source.startswith(f"loss nested() over {kind}:")
    rng = random.Random(3)
    for _ in range(3):
        case = K.make_case(loss, rng)
        assert not K.check(loss, case, backend, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_batch_local_reads_s_i(backend):
    """s[i] and y[i] in a local of a batch loss, as s and y are (docs/language.md: 's[i], y[i] are the
    same'); it was refused with 'unknown name i'. Found by the generator."""
    a = G.bin_("mul", G.leaf("yi"), G.fn("sigmoid", G.bin_("mul", G.num("3"), G.leaf("si"))))
    ret = G.bin_("div", G.Node("bred", (G.Node("local", (), "a"),), "sum"),
                 G.bin_("add", G.num("1"), G.Node("bred", (G.leaf("si"),), "mean")))
    loss = G.GeneratedLoss("batch", "local_si", (), (("a", a),), ret)
    assert "a = (y[i] * sigmoid((3 * s[i])))" in loss.source
    rng = random.Random(5)
    for _ in range(3):
        case = K.make_case(loss, rng)
        assert not K.check(loss, case, backend, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_where_on_a_where_with_a_number_branch(backend):
    """kappa = where(f < 1, 2.5, y); where(kappa >= 1.5, kappa, f): sympy folds the condition to
    where(f < 1, True, y >= 1.5), whose True the torch engine's pooled program took for a float ('where
    expected condition to be a boolean tensor'). Found by scripts/fuzz_backends.py."""
    kappa = G.where(G.leaf("f"), "<", G.num("1"), G.num("2.5"), G.leaf("y"))
    ret = G.Node("where", (G.Node("cmp", (G.Node("local", (), "kappa"), G.num("1.5")), ">="),
                           G.Node("local", (), "kappa"), G.leaf("f")))
    loss = G.GeneratedLoss("binary", "folded", (), (("kappa", kappa),), ret)
    rng = random.Random(11)
    for _ in range(3):
        case = K.make_case(loss, rng)
        assert not K.check(loss, case, backend, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_batch_where_of_parameters_keeps_float64(backend):
    """where(mean(s for i) >= T, T, tanh(T)) in a batch loss: the branches are Python numbers, and
    torch.where of numbers alone gave torch's default float32 (0.9640275835990906 for tanh(2) in float64).
    Found by scripts/fuzz_backends.py."""
    T = G.Node("param", (), "T")
    ret = G.Node("where", (G.Node("cmp", (G.Node("bred", (G.leaf("s"),), "mean"), T), ">="), T, G.fn("tanh", T)))
    loss = G.GeneratedLoss("batch", "numbers", (("T", "scalar", 2.0),), (), ret)
    case = K.Case(x=[0.2, 0.5, 0.9], shape=[3], target=[1.0, 0.0, 1.0], reduction="mean", grad_output=1.0)
    assert not K.check(loss, case, backend, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("red", ["max", "sum", "logsumexp"])
def test_called_loss_with_reductions_after_a_reduction_of_the_caller(backend, red):
    """max(softmax(z)[j] for j) - kl_div(): the callee's class reductions R1, R2 were renamed to the
    caller's R2, R3 by sequential substitution, so R1 became R3 (1.4678 instead of 0.0048). Found by
    scripts/fuzz_backends.py."""
    mine = G.Node("red", (G.leaf("smj"),), (red, False))
    loss = G.GeneratedLoss("distribution", "calls", (), (), G.bin_("sub", mine, G.Node("call", (), ("kl_div", ()))))
    rng = random.Random(13)
    for _ in range(3):
        case = K.make_case(loss, rng)
        assert not K.check(loss, case, backend, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("op", ["max", "sum"])
def test_class_reduction_of_a_class_vector_alone_excluding_the_target(backend, op):
    """softplus(max(w[j] for j != y)): a reduction over a class vector parameter alone is a [1, C] row,
    and excluding each row's target scattered [N] indices into it ('Expected index [2, 1] to be no
    larger than self [1, 5]'). Found by the generated-loss tests. Truth: plain torch per row; the
    gradient is 0 (and backward works on the reference backend too, whose loss did not read the input)."""
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    loss = lossc.loss(f"loss g(w[C] = 1.0) over multiclass:\n    return softplus({op}(w[j] for j != y))\n",
                      backend=backend, w=w, reduction="none")
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([3, 4, 0])
    reduce = torch.amax if op == "max" else torch.sum
    truth = torch.nn.functional.softplus(torch.stack([reduce(w[torch.arange(5) != k]) for k in t]))
    value = loss(x, t)
    torch.testing.assert_close(value, truth, rtol=1e-14, atol=0)
    value.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("k", [-1.0, 1.0])
def test_a_function_of_a_where_on_a_parameter_alone(backend, k):
    """tanh(where(k > 0, 0.5, f)): the where on a parameter alone printed as Python's `a if c else b`
    handed the number 0.5 to torch.tanh ('argument input must be Tensor, not float'). Found by the
    generated-loss tests once such wheres were generated again. Truth: plain torch."""
    f = torch.tensor([-3.0, 0.0, 0.25, 7.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    loss = lossc.loss("loss g(k = 1.0) over binary:\n    return tanh(where(k > 0, 0.5, f)) + f * y\n",
                      backend=backend, k=k, reduction="sum")
    value = loss(f, y)
    g = torch.full_like(f, 0.5) if k > 0 else f.detach().clone().requires_grad_(True)
    truth = (torch.tanh(g) + f.detach() * y).sum()
    torch.testing.assert_close(value, truth, rtol=1e-14, atol=0)
    value.backward()
    expected = y + (0 if k > 0 else 1 - torch.tanh(f.detach()) ** 2)
    torch.testing.assert_close(f.grad, expected, rtol=1e-14, atol=1e-15)


def test_max_of_constants_sympy_must_evaluate():
    """max(softplus(sigmoid(0.37)), 0.37): sigmoid of a number was left unevaluated inside softplus, and
    sympy's Max refused to order it ('not comparable'). Truth: the constant in plain Python."""
    loss = lossc.loss("loss g() over binary:\n    return max(softplus(sigmoid(0.37)), 0.37) * f\n", reduction="sum")
    f = torch.tensor([2.0, -1.0], dtype=torch.float64)
    constant = math.log1p(math.exp(1 / (1 + math.exp(-0.37))))
    torch.testing.assert_close(loss(f, torch.ones(2, dtype=torch.float64)), torch.tensor(constant, dtype=torch.float64),
                               rtol=1e-15, atol=0)


def _nested_where_truths():
    """(id, source, parameters, kind, input, target, truth): the wheres whose condition compares an inner
    where of numbers, parameters or C (sympy folds them into an ITE whose branches are tests of parameters
    alone), and their values computed by hand in plain torch (per element / row, before the sum)."""
    relu, where, lse = torch.relu, torch.where, (lambda z: torch.logsumexp(z, dim=1))
    f = [-3.0, -0.5, 0.25, 1.5, 4.0]
    z = [[0.3, -1.2, 2.0], [-0.4, 0.1, 0.2], [4.0, 3.5, -2.0], [-3.0, -2.0, -1.0]]
    yield ("regression", "return where(where(r < 1, 1, 1.25) >= a, a * r, r)", {"a": 1.1}, "regression",
           f, [0.5] * 5, lambda u, t, P: where(t - u >= 1, P["a"] * (t - u), t - u))
    yield ("regression-never", "return where(where(r < 1, 1, 1.25) >= a, a * r, r)", {"a": 2.0}, "regression",
           f, [0.5] * 5, lambda u, t, P: t - u)
    for k in (0.2, 0.9):  # the inner where's parameter branch passes the test, or not
        yield (f"binary-{k}", "return where(where(f >= 0, 0.7, k) <= c, f^2, f)", {"k": k, "c": 0.5}, "binary",
               f, [0.0, 1.0, 1.0, 0.0, 1.0],
               lambda u, t, P: where((u < 0) & (P["k"] <= P["c"]), u * u, u))
    for k in (2.0, -1.0):  # (k > 0) & (f > 1): a test of parameters alone and a tensor in one And
        yield (f"binary-and-{k}", "return where(where(k > 0, where(f > 1, k, 0.5), 3) < 1, f^2, f)", {"k": k},
               "binary", f, [0.0, 1.0, 1.0, 0.0, 1.0],
               lambda u, t, P: where((P["k"] > 0) & (where(u > 1, P["k"], 0.5) < 1), u * u, u))
    for p in (0.0, 2.0):  # the inner where's test of parameters alone picks the parameter, or m
        yield (f"margin-{p}", "return where(where(p <= 1.5, b, m) < b, y * m, m^2)", {"p": p, "b": 2.0}, "margin",
               f, [1.0, -1.0, 1.0, -1.0, 1.0],
               lambda u, t, P: where((P["p"] > 1.5) & (t * u < P["b"]), t * t * u, (t * u) ** 2))
    for b in (2.0, 0.0):  # (a difference of wheres in the condition; the triton kernel's constant k0 = (b > 1/4))
        yield (f"margin-diff-{b}", "return where((where(m > 0.5, m, 0.1) - where(0.25 < b, m, 0)) <= 1.5, 1e-3, m)",
               {"b": b}, "margin", f, [1.0, -1.0, 1.0, -1.0, 1.0],
               lambda u, t, P: where(where(t * u > 0.5, t * u, 0.1) - (t * u if P["b"] > 0.25 else 0.0) <= 1.5,
                                     1e-3, t * u))
    for x in (1.0, -0.25):
        yield (f"multiclass-{x}", "return where(where(z[y] < 0.5, x, logsumexp(z)) >= 0.5, 0.1, 2 * logsumexp(z))",
               {"x": x}, "multiclass", z, [2, 0, 1, 2],
               lambda u, t, P: where(where(u.gather(1, t[:, None])[:, 0] < 0.5, P["x"], lse(u)) >= 0.5, 0.1,
                                     2 * lse(u)))
    yield ("distribution-C", "return where(where(C > 1.5, where(logsumexp(z) < 3, 1, 0.25), logsumexp(z)) >= 1, "
           "1, logsumexp(z))", {}, "distribution", z, [[0.2, 0.3, 0.5]] * 4,
           lambda u, t, P: where(lse(u) < 3, 1.0, lse(u)))
    yield ("distribution-pow", "return (pos((logsumexp(z))^(a)))^(0.25)", {"a": 1.5}, "distribution",
           z[:3], [[0.2, 0.3, 0.5]] * 3, lambda u, t, P: relu(lse(u) ** P["a"]) ** 0.25)  # (lse > 0)
    for kappa in (2.0, 1.0):  # the inner where is the number 1, or the batch sum
        yield (f"batch-{kappa}", "return where(where(1.25 >= kappa, sum(s for i), 1) > 0.25, h * sum(s for i), N)",
               {"kappa": kappa, "h": 0.37}, "batch", [0.1, 0.05, 0.02, 0.03, 0.9][:4 if kappa == 1.0 else 5],
               [1.0, 0.0, 1.0, 0.0, 1.0][:4 if kappa == 1.0 else 5],
               lambda u, t, P: where((P["kappa"] > 1.25) | (u.sum() > 0.25), P["h"] * u.sum(),
                                     torch.tensor(float(u.numel()), dtype=u.dtype)))


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
@pytest.mark.parametrize("case", list(_nested_where_truths()), ids=lambda c: c[0])
def test_where_of_a_where_of_parameters_in_a_condition(case, backend):
    """A where whose condition compares an inner where of numbers, parameters or C: sympy folds the test
    into ITE(inner test, a test of parameters alone, ...), and a truth value of parameters alone (a Python
    bool) was handed to torch.where as its condition, or written by the pooled program into a float buffer
    ('where expected condition to be a boolean tensor'), or read by a triton kernel as a float constant
    ('invalid operands of type float32'). Truth: the same function by hand in plain torch."""
    _, body, params, kind, x, target, truth = case
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    dtype = torch.float32 if backend == "triton" else torch.float64
    header = ", ".join(f"{k} = {v}" for k, v in params.items())
    loss = lossc.loss(f"loss g({header}) over {kind}:\n    {body}\n", backend=backend,
                      **({} if kind == "batch" else {"reduction": "sum"}), **params)
    u = torch.tensor(x, dtype=dtype, requires_grad=True)
    t = torch.tensor(target, dtype=torch.long if kind == "multiclass" else dtype)
    value = loss(u, t)
    v = u.detach().clone().requires_grad_(True)
    expected = truth(v, t, params)
    expected = expected if kind == "batch" else expected.sum()
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    torch.testing.assert_close(value, expected.to(dtype), **tol)
    value.backward()
    expected.backward()
    torch.testing.assert_close(u.grad, v.grad, **tol)


def test_detach_of_a_constant_is_the_constant():
    """clamp(detach(tanh(0.1)), 0, 1): detach of a constant stayed unevaluated and clamp could not order it
    ('not comparable'). Truth: the constant in plain Python."""
    for body, constant in (("clamp(detach(tanh(0.1)), 0, 1)", math.tanh(0.1)),
                           ("max(detach(sigmoid(0.3)), 0.5)", 1 / (1 + math.exp(-0.3))),
                           ("min(detach(log(3)), 2)", math.log(3))):
        loss = lossc.loss(f"loss g() over binary:\n    return {body} * f\n", reduction="sum")
        f = torch.tensor([2.0, -1.0], dtype=torch.float64)
        torch.testing.assert_close(loss(f, torch.ones(2, dtype=torch.float64)),
                                   torch.tensor(constant, dtype=torch.float64), rtol=1e-15, atol=0)


def _masked(values, t, fill):
    """values [N, C] with each row's target entry replaced by fill (a reduction over j != y)."""
    return values.masked_fill(torch.nn.functional.one_hot(t, values.shape[1]).bool(), fill)


# (source body, kind, plain float64 torch of the loss per row from z [N, C] and t): class reductions max /
# min whose body reads the whole row (log_softmax, softmax, lse), over j and j != y
ROW_EXTREMA = [
    ("max((3 * log_softmax(z)[j]) for j != y)", "multiclass",
     lambda z, t: _masked(3 * torch.log_softmax(z, 1), t, -math.inf).amax(1)),
    ("min(log_softmax(z)[j] for j)", "multiclass", lambda z, t: torch.log_softmax(z, 1).amin(1)),
    ("min((softmax(z)[j] * z[j]) for j != y)", "multiclass",
     lambda z, t: _masked(torch.softmax(z, 1) * z, t, math.inf).amin(1)),
    ("logsumexp(z) * max((softmax(z)[j] - z[j]) for j != y)", "multiclass",
     lambda z, t: torch.logsumexp(z, 1) * _masked(torch.softmax(z, 1) - z, t, -math.inf).amax(1)),
    ("max(((z[j] / (0.5 + softmax(z)[j])) - softmax(z)[j]) for j)", "distribution",
     lambda z, q: (z / (0.5 + torch.softmax(z, 1)) - torch.softmax(z, 1)).amax(1)),
    ("max((softmax(z)[j] - z[j]) for j)", "distribution", lambda z, q: (torch.softmax(z, 1) - z).amax(1)),
    ("min(log_softmax(z)[j] for j)", "distribution", lambda z, q: torch.log_softmax(z, 1).amin(1)),
]


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
@pytest.mark.parametrize("body,kind,plain", ROW_EXTREMA, ids=[f"{k}-{b}" for b, k, _ in ROW_EXTREMA])
def test_class_max_and_min_of_a_row_expression(backend, body, kind, plain):
    """max / min over the classes of an expression that reads the whole row: the gradient is that of the
    selected class's expression with respect to every logit (split equally between tied maximisers, as
    torch.amax's backward). The fused engines found the argmax again by == on a test sympy had rearranged
    (Eq(R1, 3 z[j] - 3 lse) became Eq(lse, z[j] - R1/3)): grad[y] 0 instead of -0.37 at a tie of
    max(3 log_softmax(z)[j] for j != y), -0.0 or 0/0 elsewhere. Found by scripts/fuzz_backends.py.
    Truth: torch autograd of the loss written by hand in float64 (triton: float32, rows rounded first)."""
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    dtype = torch.float32 if backend == "triton" else torch.float64
    rows = torch.tensor([[0.0, 0.0, 0.0, 0.0],            # every class tied
                         [1.0, 1.0, -2.0, 0.5],            # two tied at the top
                         [-2.0, 0.5, 0.5, -2.0],           # two tied at each end
                         [-2.07, -1.26, 0.3689, 0.3690],   # a near tie
                         [3184.6, 9065.9, -8613.4, 1.0],   # saturated: p underflows
                         [0.3, -1.1, 2.2, 0.7]], dtype=torch.float64).to(dtype)
    t = torch.tensor([3, 2, 1, 0, 1, 2]) if kind == "multiclass" else torch.softmax(rows.double(), 1).to(dtype)
    grad_output = torch.tensor([0.37, -2.0, 1.0, 0.5, 1.5, -0.25], dtype=torch.float64)
    loss = lossc.loss(f"loss g() over {kind}:\n    return {body}\n", backend=backend, reduction="none")
    x = rows.clone().requires_grad_(True)
    value = loss(x, t)
    value.backward(grad_output.to(dtype))
    z = rows.double().requires_grad_(True)
    truth = plain(z, t)
    truth.backward(grad_output)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(value.double(), truth.detach(), **tol)
    assert torch.isfinite(x.grad).all(), x.grad
    torch.testing.assert_close(x.grad.double(), z.grad, **tol)


def test_nested_min_max_keep_every_bound():
    """min(max(logistic(), min(0.25, m)), clamp(m, 0.5, 1)) gave 3.136 instead of 2.25: sympy's Min took the
    0.25 of the Min nested inside the Max for a bound of the whole and dropped clamp's Max(m, 1/2). Found by
    scripts/fuzz_backends.py. Truth: random nested min / max of numbers, x, y, exp(x), -y, evaluated in plain
    Python at a few points, against the sympy expression lossc builds (its Min / Max)."""
    import sympy
    x, y = sympy.symbols("x y", real=True)

    def build(r, depth, at):
        if depth == 0 or r.random() < 0.25:
            leaf = r.choice(["number", "x", "y", "exp", "neg"])
            if leaf == "number":
                q = sympy.Rational(r.randint(-4, 4), 4)
                return q, float(q)
            return {"x": (x, at[0]), "y": (y, at[1]), "exp": (sympy.exp(x), math.exp(at[0])), "neg": (-y, -at[1])}[leaf]
        kids = [build(r, depth - 1, at) for _ in range(r.randint(2, 3))]
        pick = r.random() < 0.5
        return (sympy.Min if pick else sympy.Max)(*[e for e, _ in kids]), (min if pick else max)(v for _, v in kids)

    for seed in range(200):
        r = random.Random(seed)
        at = (r.choice([-1.0, -0.3, 0.0, 0.2, 0.6, 1.5]), r.choice([-2.0, -0.5, 0.1, 0.7, 3.0]))
        expr, value = build(r, 4, at)
        assert float(expr.subs({x: at[0], y: at[1]})) == pytest.approx(value, abs=1e-12), (seed, expr, at)
    loss = lossc.loss("loss g() over margin:\n    return min(max(logistic(), min(0.25, m)), clamp(m, 0.5, 1))\n",
                      reduction="none")
    f = torch.tensor([52.0, 2.4, -3463.8, 0.0, 0.0, 8365.6], dtype=torch.float64)
    m = f.clone()  # targets +1: m = f
    plain = torch.minimum(torch.maximum(torch.nn.functional.softplus(-m), torch.clamp_max(m, 0.25)), m.clamp(0.5, 1))
    torch.testing.assert_close(loss(f, torch.ones(6, dtype=torch.float64)), plain, rtol=1e-15, atol=0)


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
def test_the_argmax_of_a_class_max_is_found_on_the_tensor_it_was_taken_over(backend):
    """The gradient of max_j h_j weighs the argmax; found again by comparing R with a body sympy had rewritten,
    it was an ulp off and missed (at the target: lse - 2 z_y against (lse - z_j) - z_y; on a constant branch:
    5 sqrt(10)/4 against pow(2.5, 1.5)). Truth: torch autograd of the same losses written by hand."""
    if backend == "triton":
        pytest.importorskip("triton")
    cases = {
        "loss a() over multiclass:\n    return max(((log_softmax(z)[j] + z[y]) * (-1)) for j)":
            lambda z, y: (-(torch.log_softmax(z, -1) + z.gather(1, y[:, None]))).amax(-1),
        "loss b() over multiclass:\n    return max((1 + where(z[j] < 0.5, z[y], 1.5))^1.5 for j)":
            lambda z, y: (1 + torch.where(z < 0.5, z.gather(1, y[:, None]), torch.tensor(1.5, dtype=z.dtype))
                          ).pow(1.5).amax(-1),
    }
    z0 = torch.tensor([[2.420533687052705, -0.663620312101387, 1.0], [0.92, 0.92, 2.15], [0.0, 1.0, 2.0]],
                      dtype=torch.float64)
    y = torch.tensor([1, 0, 2])
    dtype = torch.float32 if backend == "triton" else torch.float64
    for source, reference in cases.items():
        module = lossc.loss(source, backend=backend, reduction="none")
        x = z0.clone().to(dtype).requires_grad_(True)
        xr = z0.clone().requires_grad_(True)
        module(x, y).sum().backward()
        reference(xr, y).sum().backward()
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(x.grad.double(), xr.grad, rtol=tol, atol=tol)
