"""Known results from the literature (MATH.md's sources), checked one verdict at a time.

Each row: loss (catalog name or a scratch .loss file), parameters, property, the verdict the literature
implies (proved = the property holds, refuted = it fails), and the source. A verdict of plausible or
unknown where the literature has an answer fails the row: these must be decided.
"""

import os
from pathlib import Path

import pytest

import lossc

os.environ.setdefault("LOSSC_NO_CACHE", "1")
LOSSES = Path(__file__).parent / "fixtures" / "losses"


def scratch(name):
    return str(LOSSES / f"{name}.loss")


BJM = "Bartlett, Jordan & McAuliffe 2006"
ZHANG = "Zhang 2004, Statistical behavior and consistency of classification methods"
TB = "Tewari & Bartlett 2007, On the consistency of multiclass classification methods"
GKS = "Ghosh, Kumar & Sastry 2017, Robust loss functions under label noise"
GMS = "Ghosh, Manwani & Sastry 2015, Making risk minimization tolerant to label noise"
MA = "Ma et al. 2020, Normalized loss functions for deep learning with noisy labels"
LENG = "Leng et al. 2022, PolyLoss"
MATH = "MATH.md"

GROUND_TRUTH = [
    # multiclass
    ("cross_entropy", {}, "convex", "proved", MATH + " (lse - z_y)"),
    ("cross_entropy", {}, "proper", "proved", "Gneiting & Raftery 2007 (log score strictly proper); " + MATH),
    ("cross_entropy", {}, "calibrated", "proved", ZHANG),
    ("cross_entropy", {}, "symmetric", "refuted", GKS),
    ("cross_entropy", {}, "bounded", "refuted", MATH),
    ("cross_entropy", {}, "smooth", "proved", "softmax CE Hessian diag(p) - pp^T is bounded"),
    ("focal", {"gamma": 2.0}, "proper", "refuted", MATH + "; Charoenphakdee et al. 2021"),
    ("focal", {"gamma": 2.0}, "convex", "refuted", MATH),
    ("focal", {"gamma": 2.0}, "calibrated", "proved", "Charoenphakdee et al. 2021, On focal loss for class-posterior "
     "probability estimation"),
    ("focal", {"gamma": 0.0}, "proper", "proved", "focal at gamma = 0 is cross-entropy (Lin et al. 2017)"),
    ("label_smoothing", {"eps": 0.1}, "proper", "refuted", MATH + " (p* = (1 - eps) q + eps / C)"),
    ("label_smoothing", {"eps": 0.1}, "convex", "proved", MATH),
    ("label_smoothing", {"eps": 0.1}, "calibrated", "proved", "p* = (1 - eps) q + eps / C keeps the argmax"),
    ("gce", {"q": 0.7}, "bounded", "proved", "Zhang & Sabuncu 2018 (GCE <= 1/q)"),
    ("gce", {"q": 0.7}, "convex", "refuted", MATH),
    ("gce", {"q": 0.7}, "proper", "refuted", MATH),
    ("mae", {}, "symmetric", "proved", GKS),
    ("mae", {}, "convex", "refuted", MATH),
    ("mae", {}, "bounded", "proved", GKS),
    ("nce", {}, "symmetric", "proved", MA),
    ("rce", {}, "symmetric", "proved", "Wang et al. 2019, Symmetric cross entropy"),
    ("nce_rce", {}, "symmetric", "proved", MA + " (active passive losses)"),
    (scratch("crammer_singer"), {}, "convex", "proved", MATH),
    (scratch("crammer_singer"), {}, "calibrated", "refuted", TB + " (C >= 3)"),
    (scratch("weston_watkins"), {}, "calibrated", "refuted", TB + " (C >= 3)"),
    ("poly1", {"eps": -2.0}, "monotone", "refuted", LENG + "; " + MATH + " (minimum at p_t = -1/eps)"),
    ("poly1", {"eps": 1.0}, "monotone", "proved", LENG + " (eps >= -1)"),
    ("poly1", {"eps": -1.0}, "monotone", "proved", LENG + " (eps >= -1)"),
    ("poly1", {"eps": 1.0}, "proper", "refuted", MATH),
    ("squentropy", {}, "convex", "proved", "Hui, Belkin & Wright 2023; " + MATH),
    ("brier", {}, "proper", "proved", "Brier 1950; Gneiting & Raftery 2007 (strictly proper)"),
    ("taylor_ce", {"t": 2}, "bounded", "proved", "Feng et al. 2020 (a polynomial in 1 - p_t)"),
    ("weston_watkins", {}, "convex", "proved", MATH + " (a sum of pos of affine functions)"),
    ("crammer_singer", {}, "smooth", "refuted", "kink where 1 + max_{j != y} z_j = z_y"),
    ("nce_mae", {}, "symmetric", "proved", MA + " (NCE and MAE are both symmetric)"),
    ("nfl", {"gamma": 0.5}, "symmetric", "proved", MA + " (normalized losses sum to 1 over labels)"),
    ("sce", {}, "symmetric", "refuted", "Wang et al. 2019 (the CE term's sum over labels is not constant)"),
    ("confidence_penalty", {"beta": 0.1}, "nonnegative", "refuted",
     "Pereyra et al. 2017: as p_t -> 1, beta H(p) ~ beta x log(1/x) outgrows CE ~ x (x = 1 - p_t)"),
    # margin
    ("hinge", {}, "convex", "proved", BJM),
    ("hinge", {}, "calibrated", "proved", BJM + " (phi'(0) = -1 < 0)"),
    ("hinge", {}, "smooth", "refuted", MATH + " (kink at m = 1)"),
    ("logistic", {}, "convex", "proved", BJM),
    ("logistic", {}, "calibrated", "proved", BJM),
    ("logistic", {}, "smooth", "proved", "phi'' = sigmoid(m) sigmoid(-m) <= 1/4"),
    ("exponential", {}, "convex", "proved", BJM),
    ("exponential", {}, "calibrated", "proved", BJM),
    ("squared_hinge", {}, "convex", "proved", ZHANG),
    ("squared_hinge", {}, "calibrated", "proved", ZHANG),
    ("sigmoid_loss", {}, "convex", "refuted", GMS),
    ("sigmoid_loss", {}, "calibrated", "proved", GMS + "; " + BJM + " (symmetric, decreasing)"),
    ("sigmoid_loss", {}, "symmetric", "proved", GMS + " (phi(m) + phi(-m) = 1)"),
    ("sigmoid_loss", {}, "bounded", "proved", GMS),
    (scratch("ramp"), {}, "symmetric", "proved", "Collobert et al. 2006; " + GMS),
    (scratch("ramp"), {}, "convex", "refuted", "Collobert et al. 2006"),
    (scratch("unhinged"), {}, "symmetric", "proved", "van Rooyen, Menon & Williamson 2015"),
    (scratch("unhinged"), {}, "calibrated", "proved", "van Rooyen, Menon & Williamson 2015"),
    (scratch("perceptron"), {}, "calibrated", "refuted", BJM + " (not differentiable at 0)"),
    (scratch("concave_kink"), {}, "convex", "refuted", "issue 3: min(1, 1 - m) has a concave kink"),
    ("modified_huber", {}, "convex", "proved", ZHANG),
    ("modified_huber", {}, "calibrated", "proved", ZHANG + " (convex, phi'(0) = -2 < 0)"),
    ("smooth_hinge", {}, "convex", "proved", "Rennie & Srebro 2005"),
    ("smooth_hinge", {}, "calibrated", "proved", BJM + " (convex, phi'(0) = -1 < 0)"),
    ("smooth_hinge", {}, "smooth", "proved", "phi'' is 1 on (0, 1) and 0 elsewhere"),
    ("savage", {}, "convex", "refuted", "Masnadi-Shirazi & Vasconcelos 2008 (non-convex, bounded)"),
    ("savage", {}, "bounded", "proved", "0 < 1 / (1 + exp(2 m))^2 < 1"),
    # binary
    ("bce", {}, "convex", "proved", "Cox 1958"),
    ("bce", {}, "proper", "proved", "Reid & Williamson 2010 (log loss, logit link)"),
    ("bce", {}, "calibrated", "proved", BJM),
    ("sigmoid_focal", {"alpha": 0.25, "gamma": 2.0}, "proper", "refuted", "Lin et al. 2017 (alpha-weighting)"),
    # regression
    ("mse", {}, "convex", "proved", "Legendre 1805"),
    ("mse", {}, "smooth", "proved", "constant second derivative 2"),
    ("mse", {}, "bounded", "refuted", "r^2 is unbounded"),
    ("mae_regression", {}, "convex", "proved", "Koenker & Bassett 1978"),
    ("mae_regression", {}, "smooth", "refuted", "kink at r = 0"),
    ("huber", {"delta": 1.0}, "convex", "proved", "Huber 1964"),
    ("huber", {"delta": 1.0}, "smooth", "proved", "Huber 1964 (once differentiable, gradient bounded)"),
    ("pseudo_huber", {"delta": 1.0}, "convex", "proved", "Charbonnier et al. 1997"),
    ("pseudo_huber", {"delta": 1.0}, "smooth", "proved", "Charbonnier et al. 1997"),
    ("log_cosh", {}, "convex", "proved", "(log cosh r)'' = sech(r)^2 > 0"),
    ("log_cosh", {}, "smooth", "proved", "(log cosh r)'' = sech(r)^2 <= 1"),
    ("quantile", {"tau": 0.9}, "convex", "proved", "Koenker & Bassett 1978 (max of two linear functions)"),
    ("quantile", {"tau": 0.9}, "smooth", "refuted", "kink at r = 0"),
    ("smooth_l1", {"beta": 1.0}, "convex", "proved", "Girshick 2015 (Huber / beta)"),
    ("smooth_l1", {"beta": 1.0}, "smooth", "proved", "second derivative 1/beta or 0"),
    ("poisson_nll", {}, "convex", "proved", "Nelder & Wedderburn 1972 (second derivative exp(yhat) > 0)"),
    ("tukey", {"c": 4.685}, "bounded", "proved", "Beaton & Tukey 1974 (at most c^2 / 6)"),
    ("tukey", {"c": 4.685}, "convex", "refuted", "Beaton & Tukey 1974 (redescending)"),
    ("barron", {"alpha": 1.0, "c": 1.0}, "convex", "proved", "Barron 2019 (alpha = 1 is pseudo-Huber)"),
    ("gmadl", {}, "nonnegative", "refuted", "Michankow et al. 2024 (negative when sign(yhat) = sign(y))"),
]


@pytest.mark.parametrize("loss, params, prop, expected, source", GROUND_TRUTH,
                         ids=[f"{Path(r[0]).stem}-{r[2]}-{'-'.join(f'{k}={v}' for k, v in r[1].items())}"
                              for r in GROUND_TRUTH])
def test_ground_truth(loss, params, prop, expected, source):
    verdict = lossc.check(loss, **params)[prop]
    assert verdict.verdict == expected, f"{source}\n{verdict.evidence}"
    if expected == "proved":
        assert verdict.evidence and verdict.counterexample is None
    else:
        assert verdict.counterexample, verdict.evidence


def test_table_is_large_and_spans_kinds():
    kinds = {lossc.parse(r[0], **{k: v for k, v in r[1].items() if isinstance(v, int) and not isinstance(v, bool)
                                  and k == "t"}).kind for r in GROUND_TRUTH}
    assert len(GROUND_TRUTH) >= 30
    assert {"multiclass", "margin", "regression"} <= kinds


def test_label_smoothing_reports_the_minimiser_map():
    evidence = lossc.check("label_smoothing", eps=0.1)["proper"].evidence
    assert "p* = (9*C*q + 1)/(10*C)" in evidence  # (1 - eps) q + eps / C


def test_poly1_counterexample_is_at_minus_one_over_eps():
    v = lossc.check("poly1", eps=-2.0)["monotone"]
    assert v.counterexample["p_t1"] == pytest.approx(0.5)


def test_parameters_are_stated_in_the_evidence():
    assert "gamma = 2" in lossc.check("focal")["proper"].evidence
    assert "gamma = 0.5" in lossc.check("focal", gamma=0.5)["proper"].evidence


def test_every_property_has_a_verdict_for_every_catalog_loss():
    from lossc.check import PROPERTIES
    for entry in lossc.catalog():
        report = lossc.check(entry.name)
        assert list(report) == list(PROPERTIES)
        for name, v in report.items():
            assert v.verdict in ("proved", "refuted", "plausible", "unknown", "n/a")
            assert v.evidence
            if v.verdict == "n/a":
                assert entry.kind != "multiclass" or name not in ("convex", "calibrated")
