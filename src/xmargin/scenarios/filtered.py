"""Filtered historical simulation (FHS): historical changes rescaled to today's volatility.

For every risk factor ``f`` (a par-curve tenor) the EWMA variance of its one-day changes
``d[t, f]`` (RiskMetrics, J.P. Morgan/Reuters "RiskMetrics -- Technical Document", 4th ed. 1996,
section 5.2.1):

    sigma2[t, f] = decay * sigma2[t - 1, f] + (1 - decay) * d[t, f] ** 2

seeded with the mean of ``d ** 2`` over the first ``SEED_DAYS`` days of the history.  An
``h``-day historical change whose window ends on row ``e`` is multiplied by

    scale[f] = min(sigma[today, f] / max(sigma[e, f], VOL_FLOOR), max_scale)

(Barone-Adesi, Giannopoulos and Vosper, "VaR without correlations for portfolios of
derivative securities", J. Futures Markets 19(5), 1999; Gurrola-Perez and Murphy, "Filtered
historical simulation Value-at-Risk models and their competitors", Bank of England Working
Paper 525, 2015), so a 2013 change is replayed at 2022's volatility and a 2008 change at a
calm year's.  The volatility "on its own date" is the one at the end of the change's window
(it includes the change itself, as in Gurrola-Perez and Murphy's eq. 3; using the day before
would let one jump on a calm day be scaled up without bound).  ``max_scale`` caps the ratio
(**choice**, default 5): in the zero-rate years the short tenors barely moved, and an
uncapped ratio would turn a 1 bp tick into a 50 bp scenario.  Relative shifts are filtered
on the log of the displaced ratio, absolute shifts on the change itself.

Units: ``sigma`` in the units of the change (percentage points for absolute shifts).  What is
left out: GARCH filters, volatility of the stressed period (stressed scenarios stay as they
happened: they are the anti-procyclicality margin, EMIR RTS 153/2013 art. 28(1)(b)).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SEED_DAYS = 250
#: Smallest daily volatility divided by (percentage points or log units): 0.001 bp.
VOL_FLOOR = 1e-5


def ewma_variance(daily: FloatArray, decay: float, seed_days: int = SEED_DAYS) -> FloatArray:
    """EWMA variance after each row of ``daily`` (``T x F`` one-day changes), same shape.

    ``out[t] = decay * out[t - 1] + (1 - decay) * daily[t] ** 2`` with ``out[-1]`` the mean of
    ``daily[:seed_days] ** 2`` (the recursion in closed form by :func:`scipy.signal.lfilter`).
    """
    from scipy.signal import (
        lfilter,  # here: scipy.signal takes 0.5-2 s to import; only FHS needs it
    )

    sq = np.asarray(daily, dtype=float) ** 2
    if sq.shape[0] == 0:
        return sq
    seed = sq[:seed_days].mean(axis=0)
    out, _ = lfilter([1.0 - decay], [1.0, -decay], sq, axis=0, zi=(decay * seed)[None, :])
    return np.asarray(out)


def ewma_volatility(levels: FloatArray, decay: float, *, relative: bool = False,
                    displacement: float = 1.0) -> FloatArray:
    """``T x F`` EWMA volatility of the one-day changes of ``levels`` (``T x F``) after each row;
    row 0 (no change yet) repeats the seed.  ``relative``: changes are
    ``ln((y[t] + c) / (y[t - 1] + c))`` with ``c = displacement``."""
    y = np.asarray(levels, dtype=float)
    daily = np.log((y[1:] + displacement) / (y[:-1] + displacement)) if relative else y[1:] - y[:-1]
    var = ewma_variance(daily, decay)
    seed = (daily[:SEED_DAYS] ** 2).mean(axis=0)
    return np.sqrt(np.vstack([seed[None, :], var]))


def filter_scales(vol: FloatArray, end_rows: npt.NDArray[np.int64], today_row: int, max_scale: float) -> FloatArray:
    """``S x F`` multipliers ``sigma[today] / sigma[end_rows]`` capped at ``max_scale``."""
    ratio = vol[today_row][None, :] / np.maximum(vol[end_rows], VOL_FLOOR)
    return np.minimum(ratio, max_scale)


def apply_scales(before: FloatArray, after: FloatArray, base: FloatArray, scales: FloatArray, *,
                 relative: bool, displacement: float) -> FloatArray:
    """Scenario levels: ``base`` moved by the historical change ``after - before`` (or the
    displaced log ratio) multiplied factor by factor by ``scales``.  This is the one hook
    where per-factor changes are scaled; other risk factors (basis, spreads) can use it too."""
    if relative:
        c = displacement
        return (base + c) * np.exp(scales * np.log((after + c) / (before + c))) - c
    return base + scales * (after - before)


#: Smallest eigenvalue kept in an EWMA correlation matrix before its square roots are taken
#: (**choice**; the eigenvalues of the 11-13 tenors' matrix sum to their number).  Tenors filled by
#: interpolation (2M before 2018, 4M before 2022, 30Y = 20Y in 2002-06) make the matrix singular,
#: and at 1e-4 a window whose changes leave such a near-singular direction was amplified up to
#: 100 times (a 19% one-month bill scenario on 2008-10-10, 3.5% on the 30-year).  Both matrices
#: are floored alike, so directions below the floor then and today keep their own correlation
#: (the per-tenor filter's), and the correlation filter acts on the directions that carry variance.
CORRELATION_FLOOR = 1e-2


def ewma_correlation(daily: FloatArray, decay: float, seed_days: int = SEED_DAYS) -> FloatArray:
    """``T x F x F`` EWMA correlation of the one-day changes ``daily`` (``T x F``) after each row,
    the covariance recursion of :func:`ewma_variance` on every product ``d[t, i] d[t, j]``."""
    d = np.asarray(daily, dtype=float)
    t, f = d.shape
    prods = (d[:, :, None] * d[:, None, :]).reshape(t, f * f)
    from scipy.signal import lfilter

    seed = prods[:seed_days].mean(axis=0)
    cov, _ = lfilter([1.0 - decay], [1.0, -decay], prods, axis=0, zi=(decay * seed)[None, :])
    cov = np.asarray(cov).reshape(t, f, f)
    sd = np.sqrt(np.maximum(np.einsum("tii->ti", cov), VOL_FLOOR ** 2))
    return np.asarray(cov / (sd[:, :, None] * sd[:, None, :]))


def correlation_roots(corr: FloatArray, floor: float = CORRELATION_FLOOR) -> tuple[FloatArray, FloatArray]:
    """``(C^(1/2), C^(-1/2))`` of each ``F x F`` correlation matrix in ``corr`` (symmetric roots,
    eigenvalues floored at ``floor``)."""
    w, v = np.linalg.eigh(corr)
    w = np.maximum(w, floor)
    root = np.einsum("...ik,...k,...jk->...ij", v, np.sqrt(w), v)
    inv = np.einsum("...ik,...k,...jk->...ij", v, 1.0 / np.sqrt(w), v)
    return root, inv


def decorrelated(change: FloatArray, sigma: FloatArray, inv_root: FloatArray) -> FloatArray:
    """``S x F``: changes standardised by their factors' volatility on their own row and
    decorrelated, ``w = C[row]^(-1/2) (change / sigma[row])`` (``sigma``: ``S x F``, ``inv_root``:
    ``S x F x F``).  It does not depend on today: a backtest computes it once per window."""
    return np.einsum("sij,sj->si", inv_root, change / np.maximum(sigma, VOL_FLOOR))


def recorrelated(w: FloatArray, sigma: FloatArray, root_today: FloatArray, sigma_today: FloatArray,
                 max_scale: float) -> FloatArray:
    """``S x F`` changes at today's correlation and volatility: ``min(sigma[today], max_scale
    sigma[row]) (C[today]^(1/2) w)`` (the per-factor ratio capped as in :func:`filter_scales`)."""
    return np.minimum(sigma_today[None, :], max_scale * np.maximum(sigma, VOL_FLOOR)) * (w @ root_today.T)


def correlation_filtered(change: FloatArray, vol: FloatArray, roots: tuple[FloatArray, FloatArray],
                         rows: npt.NDArray[np.int64], today_row: int, max_scale: float) -> FloatArray:
    """``S x F`` changes filtered for volatility **and** correlation (correlation-weighted FHS:
    Dowd, *Measuring Market Risk*, 2nd ed. 2005, section 4.4; Pritsker, "The hidden dangers of
    historical simulation", 2001: per-factor FHS "requires additional refinement to account for
    time-varying correlations").  Each change is standardised by its factors' volatility on its
    row, ``z = change / sigma[row]``, decorrelated with the correlation of its row and
    recorrelated with today's, ``z' = C[today]^(1/2) C[row]^(-1/2) z``, then rescaled factor by
    factor to today's volatility, the ratio capped as in :func:`filter_scales`:
    ``change' = min(sigma[today], max_scale sigma[row]) z'``.  With today's correlation equal to the
    row's this is exactly the per-factor filter.  ``vol``: ``T x F``; ``roots``: ``(C^(1/2),
    C^(-1/2))``, each ``T x F x F`` (:func:`correlation_roots`)."""
    root, inv = roots
    w = decorrelated(change, vol[rows], inv[rows])
    return recorrelated(w, vol[rows], root[today_row], vol[today_row], max_scale)
