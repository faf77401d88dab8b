"""An independent numeric auditor of `proved` verdicts on generated one-variable losses.

Every property lossc proves is sampled where a counterexample would show, on the generator's own truth
(tests/checkgen.py: the expression as written, mpmath at 50 digits; never lossc's printers): midpoint
convexity at many widths, the sign, the growth far out, the label sum, the order of values, the value and
the one-sided slopes at every kink (located from the generator's switching functions), and the conditional
risks' minimisers. Sampling proves nothing; it only catches a false proof.
"""

from __future__ import annotations

import mpmath

from checkgen import Loss, kinks, mpf

AUDITED = ("convex", "nonnegative", "bounded", "symmetric", "monotone", "smooth", "calibrated", "proper")
TINY = mpf("1e-25")


def _points(ks) -> list:
    pts = {mpf(i) / 4 for i in range(-120, 121)} | {mpf(v) for v in (-1e3, -100, -50, 50, 100, 1e3)}
    for k in ks:
        for d in (0, 1e-9, 1e-5, 1e-2):
            pts |= {k + mpf(d), k - mpf(d)}
    return sorted(pts)


def _tol(*vals):
    return TINY * (1 + sum(abs(v) for v in vals))


def _labels(loss: Loss):
    return list(loss.cases.items())


def audit_convex(loss, pts, ks):
    for label, g in _labels(loss):
        for x in pts[::2] + ks:
            gx = g(x)
            for h in (mpf("1e-7"), mpf("1e-3"), mpf("0.1"), mpf(1), mpf(4)):
                a, b = g(x - h), g(x + h)
                if gx - (a + b) / 2 > _tol(a, b, gx):
                    return f"y={label}: L({mpmath.nstr(x, 8)}) = {mpmath.nstr(gx, 12)} > chord {mpmath.nstr((a + b) / 2, 12)} (h={mpmath.nstr(h, 3)})"
    return None


def audit_nonnegative(loss, pts, ks):
    for label, g in _labels(loss):
        for x in pts + ks:
            if g(x) < -TINY:
                return f"y={label}: L({mpmath.nstr(x, 8)}) = {mpmath.nstr(g(x), 12)} < 0"
    return None


def audit_bounded(loss, pts, ks):
    for label, g in _labels(loss):
        for s in (1, -1):
            v = [abs(g(s * mpf(10) ** k)) for k in (10, 20, 40)]
            if v[2] > 1e8 and v[2] > 100 * max(v[1], 1):
                return f"y={label}: |L| = {[mpmath.nstr(t, 5) for t in v]} at {s}*1e10, 1e20, 1e40: unbounded"
        for x in pts + ks:
            if abs(g(x)) > 1e12:
                return f"y={label}: |L({mpmath.nstr(x, 8)})| = {mpmath.nstr(g(x), 5)}"
    return None


def audit_symmetric(loss, pts, ks):
    if loss.kind == "margin":
        phi = loss.cases[1]
        total = lambda x: phi(x) + phi(-x)  # noqa: E731
    elif loss.kind == "binary":
        total = lambda x: loss.cases[1](x) + loss.cases[0](x)  # noqa: E731
    else:
        return None
    t0 = total(mpf(0))
    for x in pts + ks:
        if abs(total(x) - t0) > _tol(t0, total(x)) * 1e10:
            return f"label sum {mpmath.nstr(total(x), 12)} at {mpmath.nstr(x, 8)} but {mpmath.nstr(t0, 12)} at 0"
    return None


def audit_monotone(loss, pts, ks):
    xs = sorted(set(pts) | set(ks) | {k + mpf("1e-12") for k in ks} | {k - mpf("1e-12") for k in ks})
    for label, g in _labels(loss):
        v = [g(x) for x in xs]
        for i in range(len(xs) - 1):
            d = v[i + 1] - v[i]
            if loss.kind == "margin" or (loss.kind == "binary" and label == 1):
                bad = d > _tol(v[i], v[i + 1])
            elif loss.kind == "binary":
                bad = d < -_tol(v[i], v[i + 1])
            else:  # regression: non-increasing for r < 0, non-decreasing for r > 0
                bad = (xs[i + 1] <= 0 and d > _tol(v[i], v[i + 1])) or (xs[i] >= 0 and d < -_tol(v[i], v[i + 1]))
            if bad:
                return (f"y={label}: L({mpmath.nstr(xs[i], 10)}) = {mpmath.nstr(v[i], 12)}, "
                        f"L({mpmath.nstr(xs[i + 1], 10)}) = {mpmath.nstr(v[i + 1], 12)}")
    return None


def audit_smooth(loss, pts, ks):
    h = mpf("1e-18")
    for label, g in _labels(loss):
        for k in ks:
            left, at, right = g(k - h), g(k), g(k + h)
            if abs(right - left) > mpf("1e-9") or abs(at - right) > mpf("1e-9") or abs(at - left) > mpf("1e-9"):
                return (f"y={label}: the value jumps at {mpmath.nstr(k, 12)}: {mpmath.nstr(left, 12)}, "
                        f"{mpmath.nstr(at, 12)}, {mpmath.nstr(right, 12)}")
            sl = (g(k - h) - g(k - 2 * h)) / h
            sr = (g(k + 2 * h) - g(k + h)) / h
            if abs(sl - sr) > mpf("1e-6"):
                return f"y={label}: the slope jumps at {mpmath.nstr(k, 12)}: {mpmath.nstr(sl, 10)} -> {mpmath.nstr(sr, 10)}"
            for d in (mpf("1e-12"), mpf("1e-6")):
                for side in (1, -1):
                    x = k + side * d
                    s1 = (g(x + d / 4) - g(x - d / 4)) / (d / 2)
                    if abs(s1) > 1e6:
                        return f"y={label}: slope {mpmath.nstr(s1, 6)} near the kink {mpmath.nstr(k, 12)}"
        for x in pts[::4]:  # curvature: second differences bounded (small constants: a huge one is a blow-up)
            for hh in (mpf("1e-4"),):
                c = (g(x + hh) - 2 * g(x) + g(x - hh)) / hh ** 2
                if abs(c) > 1e6 and not any(abs(x - k) < 2 * hh for k in ks):
                    return f"y={label}: second difference {mpmath.nstr(c, 6)} at {mpmath.nstr(x, 8)}"
    return None


def _risk_grid(loss):
    scores = sorted({mpf(i) / 8 for i in range(-320, 321)} | {mpf(s) * mpf(v) for s in (1, -1) for v in
                    (1e-3, 1e-2, 0.03, 0.06, 100, 1e3, 1e6)})
    if loss.kind == "margin":
        phi = loss.cases[1]
        return scores, [phi(a) for a in scores], [phi(-a) for a in scores]
    return scores, [loss.cases[1](a) for a in scores], [loss.cases[0](a) for a in scores]


def _refined(risk, scores, C, keep) -> mpf:
    """The lowest risk found among the scores that ``keep`` allows: the best grid point, then a golden-section
    search between its neighbours (every value found is attained, so it bounds the infimum from above)."""
    idx = [i for i, a in enumerate(scores) if keep(a)]
    i = min(idx, key=lambda j: C[j])
    best = C[i]
    lo = scores[i - 1] if i - 1 in idx else scores[i]
    hi = scores[i + 1] if i + 1 in idx else scores[i]
    if lo == hi or abs(hi - lo) > 1:
        return best
    g = (mpmath.sqrt(5) - 1) / 2
    a, b = lo, hi
    for _ in range(80):
        c, d = b - g * (b - a), a + g * (b - a)
        if risk(c) < risk(d):
            b = d
        else:
            a = c
    return min(best, risk((a + b) / 2))


def audit_calibrated(loss, pts, ks):
    if loss.kind == "regression":
        return None
    scores, lp, lm = _risk_grid(loss)
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    scores, lp, lm = [scores[i] for i in order], [lp[i] for i in order], [lm[i] for i in order]
    l1, l0 = (loss.cases[1], (lambda a: loss.cases[1](-a))) if loss.kind == "margin" else \
        (loss.cases[1], loss.cases[0])
    for eta in (mpf("0.55"), mpf("0.6"), mpf("0.75"), mpf("0.9"), mpf("0.45"), mpf("0.2")):
        C = [eta * a + (1 - eta) * b for a, b in zip(lp, lm)]
        risk = lambda a, eta=eta: eta * l1(a) + (1 - eta) * l0(a)  # noqa: E731
        sgn = 1 if eta > 0.5 else -1
        Hr = _refined(risk, scores, C, lambda a: a * sgn > 0)
        Hw = _refined(risk, scores, C, lambda a: a * sgn <= 0)
        H = min(Hr, Hw)
        if Hw <= H + mpf("1e-12") * (1 + abs(H)) and Hw <= Hr:
            return f"eta={mpmath.nstr(eta, 3)}: the best wrong-sign risk {mpmath.nstr(Hw, 12)} is the lowest found ({mpmath.nstr(H, 12)})"
    return None


def audit_proper(loss, pts, ks):
    if loss.kind != "binary":
        return None
    scores, lp, lm = _risk_grid(loss)
    for eta in (mpf("0.1"), mpf("0.3"), mpf("0.7"), mpf("0.9")):
        f0 = mpmath.log(eta / (1 - eta))
        c0 = eta * loss.cases[1](f0) + (1 - eta) * loss.cases[0](f0)
        for a, b, s in zip(lp, lm, scores):
            c = eta * a + (1 - eta) * b
            if c < c0 - _tol(c0, c):
                return f"eta={mpmath.nstr(eta, 3)}: risk {mpmath.nstr(c, 12)} at f={mpmath.nstr(s, 6)} below the truthful {mpmath.nstr(c0, 12)}"
    return None


AUDITS = {name: globals()[f"audit_{name}"] for name in AUDITED}


def audit(loss: Loss, report) -> dict:
    """{property: contradiction text} for every proved verdict the truth contradicts; and the count of
    proved verdicts audited per property in ``audit.counts`` (updated)."""
    ks = kinks(loss)
    pts = _points(ks)
    found = {}
    for name in AUDITED:
        if report[name].verdict != "proved":
            continue
        audit.counts[name] = audit.counts.get(name, 0) + 1
        why = AUDITS[name](loss, pts, ks)
        if why:
            found[name] = why
    return found


audit.counts = {}
