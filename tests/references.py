"""Hand-written PyTorch references for the catalog losses: the test oracle.

Each function is plain torch code written straight from the loss's paper (or
from the library whose semantics the catalog follows: PyTorch, torchvision),
the way a careful PyTorch user would write it. Nothing here is derived from
the ``.loss`` files and nothing imports ``lossc``, so agreement between the
two is evidence that both are right.

Every function returns the *unreduced* loss:

- ``multiclass``: ``fn(logits[N, C, ...], target[N, ...] int64, **params) -> [N, ...]``
- ``binary``:     ``fn(f, y, **params)``, ``y`` float in {0, 1}, same shape as ``f``
- ``margin``:     ``fn(f, y, **params)``, ``y`` float in {-1, +1}; ``m = y * f``
- ``regression``: ``fn(yhat, y, **params)``; residual ``r = y - yhat``

``REFERENCES[name]`` gives the kind, the function, the catalog defaults
(``params``) and a second, non-default setting to test (``alt_params``).
Vector parameters are lists (``poly_n``'s ``eps``; its ``N`` is ``len(eps)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["Reference", "REFERENCES"]


@dataclass(frozen=True)
class Reference:
    kind: str  # "multiclass" | "binary" | "margin" | "regression" | "distribution"
    fn: Callable[..., torch.Tensor]  # unreduced per-sample loss
    params: dict = field(default_factory=dict)  # the catalog defaults
    alt_params: dict = field(default_factory=dict)  # a second, non-default setting
    # fn takes weight= (class weights) and applies them itself, as PyTorch's label smoothing does; the
    # mean still divides by the kept rows' weight[target]
    reads_weight: bool = False


# --------------------------------------------------------------------------
# multiclass helpers (class dimension is dim 1, as in F.cross_entropy)
# --------------------------------------------------------------------------

def _log_p_t(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log softmax(z)[y], shape of target."""
    return F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)


def _one_hot(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One-hot target laid out like logits (class dimension 1), logits' dtype."""
    return torch.zeros_like(logits).scatter_(1, target.unsqueeze(1), 1.0)


def _one_minus_p_t(logp_t: torch.Tensor) -> torch.Tensor:
    """1 - p_t computed as -expm1(log p_t): accurate when p_t is near 1."""
    return -torch.expm1(logp_t)


# --------------------------------------------------------------------------
# multiclass
# --------------------------------------------------------------------------

def cross_entropy(logits, target):
    """-log p_y (Bridle 1990); PyTorch's F.cross_entropy."""
    return F.cross_entropy(logits, target, reduction="none")


def focal(logits, target, gamma=2.0):
    """Lin et al. 2017: FL(p_t) = -(1 - p_t)^gamma log p_t (no alpha)."""
    logp_t = _log_p_t(logits, target)
    return -(_one_minus_p_t(logp_t) ** gamma) * logp_t


def poly1(logits, target, eps=1.0):
    """Leng et al. 2022, Poly-1: CE + eps (1 - p_t)."""
    logp_t = _log_p_t(logits, target)
    return -logp_t + eps * _one_minus_p_t(logp_t)


def poly_n(logits, target, eps=(1.0,), N=None):
    """Leng et al. 2022, Poly-N: CE + sum_{j=1..N} eps_j (1 - p_t)^j, N = len(eps)."""
    eps = [float(e) for e in eps]
    if N is not None and int(N) != len(eps):
        raise ValueError(f"poly_n: N={N} but len(eps)={len(eps)}")
    logp_t = _log_p_t(logits, target)
    x = _one_minus_p_t(logp_t)
    loss = -logp_t
    for j, e in enumerate(eps, start=1):
        loss = loss + e * x**j
    return loss


def focal_poly1(logits, target, gamma=2.0, eps=1.0):
    """Leng et al. 2022, Poly-1 of focal loss: FL_gamma + eps (1 - p_t)^(gamma + 1)."""
    logp_t = _log_p_t(logits, target)
    x = _one_minus_p_t(logp_t)
    return -(x**gamma) * logp_t + eps * x ** (gamma + 1)


def squentropy(logits, target):
    """Hui, Belkin & Wright 2023: CE + (1/(C-1)) sum_{j != y} z_j^2.

    As in the authors' code: mean over the incorrect classes of the squared
    logits, added to cross-entropy.
    """
    C = logits.shape[1]
    wrong = 1.0 - _one_hot(logits, target)
    sq = (logits**2 * wrong).sum(dim=1) / (C - 1)
    return F.cross_entropy(logits, target, reduction="none") + sq


def label_smoothing(logits, target, eps=0.1, weight=None):
    """Szegedy et al. 2016: CE against q' = (1 - eps) one_hot(y) + eps / C; class weights as PyTorch's
    nn.CrossEntropyLoss(weight=w, label_smoothing=eps): w_y on the target term, w_j in the smoothing sum."""
    C = logits.shape[1]
    w = torch.ones(C, dtype=logits.dtype) if weight is None else weight.to(logits.dtype)
    w = w.reshape((1, C) + (1,) * (logits.dim() - 2))
    q = (1.0 - eps) * _one_hot(logits, target) * w.expand_as(logits).gather(1, target.unsqueeze(1)) + eps / C * w
    return -(q * F.log_softmax(logits, dim=1)).sum(dim=1)


def gce(logits, target, q=0.7):
    """Zhang & Sabuncu 2018: L_q = (1 - p_y^q) / q."""
    p_t = torch.exp(_log_p_t(logits, target))
    return (1.0 - p_t**q) / q


def mae(logits, target):
    """Ghosh et al. 2017 / Ma et al. 2020: ||e_y - softmax(z)||_1 (= 2 (1 - p_y))."""
    p = F.softmax(logits, dim=1)
    return (_one_hot(logits, target) - p).abs().sum(dim=1)


def nce(logits, target):
    """Ma et al. 2020: NCE = -log p_y / (-sum_j log p_j), as in the authors' code."""
    logp = F.log_softmax(logits, dim=1)
    logp_y = logp.gather(1, target.unsqueeze(1)).squeeze(1)
    return -logp_y / (-logp.sum(dim=1))


def rce(logits, target, A=math.log(1e-4)):
    """Wang et al. 2019: RCE = -sum_k p_k log q_k, one-hot q with log 0 := A."""
    p = F.softmax(logits, dim=1)
    log_q = (1.0 - _one_hot(logits, target)) * A  # log 1 = 0, log 0 = A
    return -(p * log_q).sum(dim=1)


def nce_rce(logits, target, alpha=1.0, beta=1.0, A=math.log(1e-4)):
    """Ma et al. 2020, APL: alpha * NCE + beta * RCE."""
    return alpha * nce(logits, target) + beta * rce(logits, target, A=A)


def taylor_ce(logits, target, t=2):
    """Feng et al. 2020: sum_{k=1..t} (1 - p_y)^k / k (Taylor series of -log p_y)."""
    t = int(t)
    x = _one_minus_p_t(_log_p_t(logits, target))
    loss = torch.zeros_like(x)
    for k in range(1, t + 1):
        loss = loss + x**k / k
    return loss


def brier(logits, target):
    """Brier 1950: sum_j (p_j - [j = y])^2."""
    p = F.softmax(logits, dim=1)
    return ((p - _one_hot(logits, target)) ** 2).sum(dim=1)


def nce_mae(logits, target, alpha=1.0, beta=0.5):
    """Ma et al. 2020, APL: alpha * NCE + beta * MAE, MAE = ||e_y - p||_1 as in the paper."""
    return alpha * nce(logits, target) + beta * mae(logits, target)


def z_loss(logits, target, a=1.0, b=2.0):
    """de Brebisson & Vincent 2016: softplus(a (b - z_c)) / a, z = (o - mean(o)) / std(o) over classes
    (the population std, two-pass: of the centred logits); a row of equal logits has z_c = 0."""
    mu = logits.mean(dim=1, keepdim=True)
    centred = logits - mu
    sigma = centred.square().mean(dim=1, keepdim=True).sqrt()
    constant = (logits == logits[:, :1]).all(dim=1, keepdim=True)
    z = torch.where(constant, 0.0, centred / torch.where(constant, 1.0, sigma))
    z_c = z.gather(1, target.unsqueeze(1)).squeeze(1)
    return F.softplus(a * (b - z_c)) / a


def crammer_singer(logits, target):
    """Crammer & Singer 2001: max(0, 1 + max_{j != y} z_j - z_y)."""
    z_y = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(_one_hot(logits, target).bool(), -math.inf)
    return torch.clamp(1.0 + others.amax(dim=1) - z_y, min=0.0)


def weston_watkins(logits, target):
    """Weston & Watkins 1999: sum_{j != y} max(0, 1 + z_j - z_y)."""
    z_y = logits.gather(1, target.unsqueeze(1))
    hinge = torch.clamp(1.0 + logits - z_y, min=0.0)
    return (hinge * (1.0 - _one_hot(logits, target))).sum(dim=1)


def sce(logits, target, alpha=0.1, beta=1.0, A=math.log(1e-4)):
    """Wang et al. 2019, symmetric cross-entropy: alpha * CE + beta * RCE."""
    return alpha * F.cross_entropy(logits, target, reduction="none") + beta * rce(logits, target, A=A)


def nfl(logits, target, gamma=0.5):
    """Ma et al. 2020, normalized focal loss: FL(p_y) / sum_j FL(p_j), FL(p) = -(1 - p)^gamma log p."""
    logp = F.log_softmax(logits, dim=1)
    fl = -((-torch.expm1(logp)) ** gamma) * logp
    return fl.gather(1, target.unsqueeze(1)).squeeze(1) / fl.sum(dim=1)


def confidence_penalty(logits, target, beta=0.1):
    """Pereyra et al. 2017: CE - beta * H(softmax(z))."""
    logp = F.log_softmax(logits, dim=1)
    entropy = -(logp.exp() * logp).sum(dim=1)
    return F.cross_entropy(logits, target, reduction="none") - beta * entropy


def ce_zloss(logits, target, beta=1e-4):
    """Chowdhery et al. 2022 (PaLM): CE + beta * log(Z)^2, Z = sum_j exp(z_j)."""
    return F.cross_entropy(logits, target, reduction="none") + beta * torch.logsumexp(logits, dim=1) ** 2



# --------------------------------------------------------------------------
# margin (y in {-1, +1}, m = y f)
# --------------------------------------------------------------------------

def logistic(f, y):
    """log(1 + exp(-m)) (Cox 1958)."""
    return F.softplus(-(y * f))


def hinge(f, y):
    """max(0, 1 - m) (Cortes & Vapnik 1995)."""
    return torch.clamp(1.0 - y * f, min=0.0)


def squared_hinge(f, y):
    """max(0, 1 - m)^2 (Zhang 2004, "modified least squares")."""
    return torch.clamp(1.0 - y * f, min=0.0) ** 2


def exponential(f, y):
    """exp(-m) (Freund & Schapire 1997)."""
    return torch.exp(-(y * f))


def sigmoid_loss(f, y):
    """1 / (1 + exp(m)) (Ghosh, Manwani & Sastry 2015)."""
    return torch.sigmoid(-(y * f))


def modified_huber(f, y):
    """Zhang 2004: max(0, 1 - m)^2 if m >= -1 else -4 m (scikit-learn's "modified_huber")."""
    m = y * f
    return torch.where(m >= -1, torch.clamp(1.0 - m, min=0.0) ** 2, -4.0 * m)


def smooth_hinge(f, y):
    """Rennie & Srebro 2005: 1/2 - m (m <= 0), (1 - m)^2 / 2 (0 < m < 1), 0 (m >= 1)."""
    m = y * f
    return torch.where(m <= 0, 0.5 - m, torch.where(m < 1, 0.5 * (1.0 - m) ** 2, torch.zeros_like(m)))


def savage(f, y):
    """Masnadi-Shirazi & Vasconcelos 2008: 1 / (1 + exp(2 m))^2."""
    return 1.0 / (1.0 + torch.exp(2.0 * y * f)) ** 2


# --------------------------------------------------------------------------
# binary (y in {0, 1})
# --------------------------------------------------------------------------

def bce(f, y):
    """-y log sigmoid(f) - (1 - y) log(1 - sigmoid(f)); PyTorch's BCEWithLogits."""
    return F.binary_cross_entropy_with_logits(f, y, reduction="none")


def sigmoid_focal(f, y, alpha=0.25, gamma=2.0):
    """Lin et al. 2017, binary focal loss: torchvision.ops.sigmoid_focal_loss, unreduced."""
    p = torch.sigmoid(f)
    ce_loss = F.binary_cross_entropy_with_logits(f, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * y + (1 - alpha) * (1 - y)
        loss = alpha_t * loss
    return loss


# --------------------------------------------------------------------------
# regression (r = y - yhat)
# --------------------------------------------------------------------------

def mse(yhat, y):
    """r^2; PyTorch's MSELoss."""
    return F.mse_loss(yhat, y, reduction="none")


def mae_regression(yhat, y):
    """|r|; PyTorch's L1Loss."""
    return F.l1_loss(yhat, y, reduction="none")


def huber(yhat, y, delta=1.0):
    """Huber 1964, PyTorch's HuberLoss: 0.5 r^2 if |r| < delta else delta (|r| - delta / 2)."""
    return F.huber_loss(yhat, y, reduction="none", delta=delta)


def pseudo_huber(yhat, y, delta=1.0):
    """Charbonnier et al. 1997: delta^2 (sqrt(1 + (r / delta)^2) - 1)."""
    r = y - yhat
    return delta**2 * (torch.sqrt(1 + (r / delta) ** 2) - 1)


def log_cosh(yhat, y):
    """Neuneier & Zimmermann 1998: log(cosh(r)) (float64 cosh is finite for the test's residuals)."""
    return torch.log(torch.cosh(y - yhat))


def quantile(yhat, y, tau=0.5):
    """Koenker & Bassett 1978, pinball loss: r (tau - [r < 0])."""
    r = y - yhat
    return r * (tau - (r < 0).to(r.dtype))


def gmadl(yhat, y, a=100.0, b=1.0):
    """Michankow et al. 2024: -(1 / (1 + exp(-a R R_hat)) - 1/2) |R|^b, R = y, R_hat = yhat."""
    return -(torch.sigmoid(a * y * yhat) - 0.5) * y.abs() ** b  # sigmoid(x) = 1 / (1 + exp(-x)), without overflow


def smooth_l1(yhat, y, beta=1.0):
    """Girshick 2015; PyTorch's SmoothL1Loss(beta)."""
    return F.smooth_l1_loss(yhat, y, reduction="none", beta=beta)


def poisson_nll(yhat, y):
    """Nelder & Wedderburn 1972; PyTorch's PoissonNLLLoss(log_input=True, full=False)."""
    return F.poisson_nll_loss(yhat, y, log_input=True, full=False, reduction="none")


def tweedie(yhat, y, rho=1.5):
    """Tweedie negative log-likelihood, log link, as XGBoost's reg:tweedie writes it with mu = exp(yhat):
    -y mu^(1-rho)/(1-rho) + mu^(2-rho)/(2-rho), each power taken as exp((k - rho) yhat); the first term
    is 0 at y = 0 (exp at 0 there, so that an overflowing exp cannot make it 0 * inf under autograd)."""
    first = y * torch.exp(torch.where(y == 0, 0.0, (1 - rho) * yhat))
    return -first / (1 - rho) + torch.exp((2 - rho) * yhat) / (2 - rho)


def tukey(yhat, y, c=4.685):
    """Beaton & Tukey 1974, biweight: c^2/6 (1 - (1 - (r/c)^2)^3) for |r| <= c, else c^2/6."""
    r = y - yhat
    inside = c**2 / 6 * (1 - (1 - (r / c) ** 2) ** 3)
    return torch.where(r.abs() <= c, inside, torch.full_like(r, c**2 / 6))


def barron(yhat, y, alpha=1.0, c=1.0):
    """Barron 2019: |alpha - 2| / alpha * (((r / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1)."""
    x = (y - yhat) / c
    k = abs(alpha - 2)
    return k / alpha * ((x**2 / k + 1) ** (alpha / 2) - 1)


# --------------------------------------------------------------------------

_A = math.log(1e-4)


# --------------------------------------------------------------------------
# multiclass losses with per-class parameters (tensors of C values; a number stands for every class)
# --------------------------------------------------------------------------

def _per_class(value, logits):
    """A per-class parameter laid out like logits' class dimension: [1, C, 1, ...]."""
    C = logits.shape[1]
    v = torch.as_tensor(value, dtype=logits.dtype)
    v = v.expand(C) if v.dim() == 0 else v
    return v.reshape((1, C) + (1,) * (logits.dim() - 2))


def logit_adjusted(logits, target, prior=1.0, tau=1.0):
    """Menon et al. 2021: cross-entropy of z + tau * log(prior)."""
    return F.cross_entropy(logits + tau * torch.log(_per_class(prior, logits)), target, reduction="none")


def ldam(logits, target, counts=1.0, max_margin=0.5, s=30.0):
    """Cao et al. 2019 (their code): margins m_j = C / n_j^(1/4) with max m_j = max_margin, subtracted
    from the target logit, then cross-entropy of s times the logits."""
    m = _per_class(counts, logits) ** -0.25
    m = m * (max_margin / m.max())
    margin = torch.gather(m.expand_as(logits), 1, target.unsqueeze(1))
    return F.cross_entropy(s * (logits - _one_hot(logits, target) * margin), target, reduction="none")


# --------------------------------------------------------------------------
# distribution: fn(logits[N, C, ...], q[N, C, ...] probabilities) -> [N, ...]
# --------------------------------------------------------------------------

def soft_cross_entropy(logits, q, eps=0.0, weight=None):
    """Cross-entropy against q' = (1 - eps) q + eps / C, class weights inside the sum (PyTorch's
    semantics for probability targets, written out)."""
    C = logits.shape[1]
    w = torch.ones(C, dtype=logits.dtype) if weight is None else weight.to(logits.dtype)
    w = w.reshape((1, C) + (1,) * (logits.dim() - 2))
    return -(w * ((1.0 - eps) * q + eps / C) * F.log_softmax(logits, dim=1)).sum(dim=1)


def kl_div(logits, q):
    """KL(q || softmax(z)) per row: nn.KLDivLoss on log-probabilities, summed over classes."""
    return F.kl_div(F.log_softmax(logits, dim=1), q, reduction="none").sum(dim=1)


def brier_distribution(logits, q):
    """Brier 1950 against soft targets: sum_j (p_j - q_j)^2."""
    return (torch.softmax(logits, dim=1) - q).pow(2).sum(dim=1)

REFERENCES: dict[str, Reference] = {
    # multiclass
    "cross_entropy": Reference("multiclass", cross_entropy),
    "focal": Reference("multiclass", focal, {"gamma": 2.0}, {"gamma": 0.5}),
    "poly1": Reference("multiclass", poly1, {"eps": 1.0}, {"eps": -0.5}),
    "poly_n": Reference(
        "multiclass", poly_n, {"N": 1, "eps": [1.0]}, {"N": 3, "eps": [0.5, -0.3, 0.2]}
    ),
    "focal_poly1": Reference(
        "multiclass", focal_poly1, {"gamma": 2.0, "eps": 1.0}, {"gamma": 1.5, "eps": -0.4}
    ),
    "squentropy": Reference("multiclass", squentropy),
    "label_smoothing": Reference("multiclass", label_smoothing, {"eps": 0.1}, {"eps": 0.3}, reads_weight=True),
    "logit_adjusted": Reference("multiclass", logit_adjusted, {"prior": 1.0, "tau": 1.0}, {"prior": 0.3, "tau": 2.0}),
    "ldam": Reference("multiclass", ldam, {"counts": 1.0, "max_margin": 0.5, "s": 30.0},
                      {"counts": 5.0, "max_margin": 0.3, "s": 2.0}),
    "soft_cross_entropy": Reference("distribution", soft_cross_entropy, {"eps": 0.0}, {"eps": 0.2},
                                    reads_weight=True),
    "kl_div": Reference("distribution", kl_div),
    "brier_distribution": Reference("distribution", brier_distribution),
    "gce": Reference("multiclass", gce, {"q": 0.7}, {"q": 0.3}),
    "mae": Reference("multiclass", mae),
    "nce": Reference("multiclass", nce),
    "rce": Reference("multiclass", rce, {"A": _A}, {"A": -4.0}),
    "nce_rce": Reference(
        "multiclass",
        nce_rce,
        {"alpha": 1.0, "beta": 1.0, "A": _A},
        {"alpha": 10.0, "beta": 0.1, "A": -4.0},
    ),
    "taylor_ce": Reference("multiclass", taylor_ce, {"t": 2}, {"t": 6}),
    "brier": Reference("multiclass", brier),
    "nce_mae": Reference("multiclass", nce_mae, {"alpha": 1.0, "beta": 0.5}, {"alpha": 10.0, "beta": 0.1}),
    "z_loss": Reference("multiclass", z_loss, {"a": 1.0, "b": 2.0}, {"a": 0.3, "b": -1.0}),
    "crammer_singer": Reference("multiclass", crammer_singer),
    "weston_watkins": Reference("multiclass", weston_watkins),
    "sce": Reference("multiclass", sce, {"alpha": 0.1, "beta": 1.0, "A": _A},
                     {"alpha": 6.0, "beta": 0.1, "A": -4.0}),
    "nfl": Reference("multiclass", nfl, {"gamma": 0.5}, {"gamma": 2.0}),
    "confidence_penalty": Reference("multiclass", confidence_penalty, {"beta": 0.1}, {"beta": 1.5}),
    "ce_zloss": Reference("multiclass", ce_zloss, {"beta": 1e-4}, {"beta": 0.05}),
    # margin
    "logistic": Reference("margin", logistic),
    "hinge": Reference("margin", hinge),
    "squared_hinge": Reference("margin", squared_hinge),
    "exponential": Reference("margin", exponential),
    "sigmoid_loss": Reference("margin", sigmoid_loss),
    "modified_huber": Reference("margin", modified_huber),
    "smooth_hinge": Reference("margin", smooth_hinge),
    "savage": Reference("margin", savage),
    # binary
    "bce": Reference("binary", bce),
    "sigmoid_focal": Reference(
        "binary", sigmoid_focal, {"alpha": 0.25, "gamma": 2.0}, {"alpha": 0.75, "gamma": 0.5}
    ),
    # regression
    "mse": Reference("regression", mse),
    "mae_regression": Reference("regression", mae_regression),
    "huber": Reference("regression", huber, {"delta": 1.0}, {"delta": 0.5}),
    "pseudo_huber": Reference("regression", pseudo_huber, {"delta": 1.0}, {"delta": 0.3}),
    "log_cosh": Reference("regression", log_cosh),
    "quantile": Reference("regression", quantile, {"tau": 0.5}, {"tau": 0.9}),
    "gmadl": Reference("regression", gmadl, {"a": 100.0, "b": 1.0}, {"a": 1.5, "b": 2.0}),
    "smooth_l1": Reference("regression", smooth_l1, {"beta": 1.0}, {"beta": 0.3}),
    "poisson_nll": Reference("regression", poisson_nll),
    "tweedie": Reference("regression", tweedie, {"rho": 1.5}, {"rho": 1.2}),
    "tukey": Reference("regression", tukey, {"c": 4.685}, {"c": 1.5}),
    "barron": Reference("regression", barron, {"alpha": 1.0, "c": 1.0}, {"alpha": -2.0, "c": 0.5}),
}


# --------------------------------------------------------------------------
# batch: AnyLoss (Han, Moniz & Chawla 2024), written from the paper: the amplifier
# A(p) = 1 / (1 + exp(-L (p - 0.5))) applied to the predicted probabilities gives a
# differentiable confusion matrix, and the loss is 1 - metric. Every function takes the
# probabilities p [n], the targets y [n] in {0, 1} and per-element weights w [n] (1 for
# a plain batch; an element of weight w counts w times, in N too) and returns one scalar.
# --------------------------------------------------------------------------

def _confusion(p, y, w, L):
    a = 1.0 / (1.0 + torch.exp(-L * (p - 0.5)))
    tp = (w * y * a).sum()
    fn = (w * y * (1 - a)).sum()
    fp = (w * (1 - y) * a).sum()
    tn = (w * (1 - y) * (1 - a)).sum()
    return tp, fn, fp, tn


def anyloss_accuracy(p, y, w, L=73.0):
    tp, fn, fp, tn = _confusion(p, y, w, L)
    return 1 - (tp + tn) / w.sum()


def anyloss_f1(p, y, w, L=73.0):
    tp, fn, fp, tn = _confusion(p, y, w, L)
    return 1 - 2 * tp / (2 * tp + fn + fp)


def anyloss_fbeta(p, y, w, L=73.0, beta=1.0):
    tp, fn, fp, tn = _confusion(p, y, w, L)
    b2 = beta ** 2
    return 1 - (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp)


def anyloss_gmean(p, y, w, L=73.0):
    tp, fn, fp, tn = _confusion(p, y, w, L)
    return 1 - torch.sqrt(tp / (w * y).sum() * tn / (w * (1 - y)).sum())


def anyloss_balanced_accuracy(p, y, w, L=73.0):
    tp, fn, fp, tn = _confusion(p, y, w, L)
    return 1 - (tp / (w * y).sum() + tn / (w * (1 - y)).sum()) / 2


def anyloss_mcc(p, y, w, L=73.0):
    """Matthews' correlation coefficient on the amplified confusion matrix (derived like the paper's)."""
    tp, fn, fp, tn = _confusion(p, y, w, L)
    return 1 - (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))


BATCH_REFERENCES: dict[str, Reference] = {
    "anyloss_accuracy": Reference("batch", anyloss_accuracy, {"L": 73.0}, {"L": 10.0}),
    "anyloss_f1": Reference("batch", anyloss_f1, {"L": 73.0}, {"L": 10.0}),
    "anyloss_fbeta": Reference("batch", anyloss_fbeta, {"L": 73.0, "beta": 1.0}, {"L": 20.0, "beta": 2.0}),
    "anyloss_gmean": Reference("batch", anyloss_gmean, {"L": 73.0}, {"L": 10.0}),
    "anyloss_balanced_accuracy": Reference("batch", anyloss_balanced_accuracy, {"L": 73.0}, {"L": 10.0}),
    "anyloss_mcc": Reference("batch", anyloss_mcc, {"L": 73.0}, {"L": 10.0}),
}


# --------------------------------------------------------------------------
# tasks: uncertainty weighting (Kendall, Gal & Cipolla 2018), s_i = log sigma_i^2
# --------------------------------------------------------------------------

def uncertainty_weighting(losses, s):
    """sum_i L_i / (2 sigma_i^2) + log sigma_i, with log sigma_i = s_i / 2."""
    total = 0.0
    for i, loss in enumerate(losses):
        sigma2 = torch.exp(s[i])
        total = total + loss / (2 * sigma2) + torch.log(sigma2) / 2
    return total


TASKS_REFERENCES: dict[str, Reference] = {
    "uncertainty_weighting": Reference("tasks", uncertainty_weighting, {"K": 2}, {"K": 3}),
}
