"""Grades of the phantom cohort: prevalence and co-occurrence from a thresholded latent Gaussian.

Each hip has one latent normal variable per target. A target is present (grade > 0) where its latent
value exceeds the quantile that gives the configured prevalence; among present hips, larger latent
values give larger grades. The latent correlation is solved from the configured correlation of the
binary labels (Pearson / phi, as paper A's Table 2 reports it), so the generated labels show the
configured correlations, not the weaker ones a raw latent rho would give.
"""

import numpy as np
import pandas as pd
from scipy import optimize, stats

from osteoloc.names import TARGETS

MISSING_SPELLINGS = ("", "NaN", "nan", "none", "NA", "na", "missing")
SIDE_SPELLINGS = {"right": ("right", "R"), "left": ("left", "L")}
# Column order of the real labels.csv (docs/method.md section 2.5).
LABEL_COLUMNS = ("cohort", "subject", "visit", "side", "osteo_acet_inf", "osteo_acet_sup", "osteo_fem_inf",
                 "osteo_fem_sup")


def correlation_matrix(correlation):
    """A 4x4 matrix from a number (every off-diagonal) or a nested list."""
    if np.isscalar(correlation):
        m = np.full((4, 4), float(correlation))
        np.fill_diagonal(m, 1.0)
        return m
    m = np.asarray(correlation, dtype=float)
    if m.shape != (4, 4) or not np.allclose(m, m.T) or not np.allclose(np.diag(m), 1.0):
        raise ValueError(f"cohort.phantom.label_correlation must be a number or a symmetric 4x4 matrix with "
                         f"unit diagonal, got {correlation!r}")
    return m


def latent_correlation(phi, prevalence):
    """Latent normal correlation whose thresholding gives binary correlation `phi` at these prevalences."""
    p = np.asarray(prevalence, dtype=float)
    k = len(p)
    z = stats.norm.ppf(1.0 - p)  # present where latent > z
    rho = np.eye(k)
    for a in range(k):
        for b in range(a + 1, k):
            target = p[a] * p[b] + phi[a, b] * np.sqrt(p[a] * (1 - p[a]) * p[b] * (1 - p[b]))

            def both(r, a=a, b=b, target=target):
                # P(Za > za, Zb > zb) = P(-Za < -za, -Zb < -zb)
                cov = [[1.0, r], [r, 1.0]]
                return stats.multivariate_normal(mean=[0, 0], cov=cov).cdf([-z[a], -z[b]]) - target

            lo, hi = -0.99, 0.99
            if both(lo) > 0 or both(hi) < 0:
                raise ValueError(f"label correlation {phi[a, b]} between {TARGETS[a]} and {TARGETS[b]} cannot "
                                 f"be reached at prevalences {p[a]}, {p[b]}")
            rho[a, b] = rho[b, a] = optimize.brentq(both, lo, hi, xtol=1e-6)
    return nearest_correlation(rho)


def nearest_correlation(m):
    """Clip negative eigenvalues so the matrix is a valid correlation matrix."""
    w, v = np.linalg.eigh(m)
    if w.min() > 1e-6:
        return m
    m = (v * np.clip(w, 1e-6, None)) @ v.T
    d = np.sqrt(np.diag(m))
    return m / np.outer(d, d)


def sample_latent(rng, n_subjects, n_visits, target_rho, side_rho, visit_rho):
    """Latent values (subjects, visits, 2 sides, 4 targets), correlated within hip, across hips and visits."""
    sides = np.array([[1.0, side_rho], [side_rho, 1.0]])
    visits = visit_rho ** np.abs(np.subtract.outer(np.arange(n_visits), np.arange(n_visits)))
    cov = np.kron(visits, np.kron(sides, target_rho))
    chol = np.linalg.cholesky(nearest_correlation(cov))
    z = rng.standard_normal((n_subjects, cov.shape[0])) @ chol.T
    return z.reshape(n_subjects, n_visits, 2, 4)


def grades_from_latent(z, prevalence, grade_shares):
    """OARSI grades 0-3: present above the prevalence threshold, then split by the shares of grades 1-3."""
    p = np.asarray(prevalence, dtype=float)
    shares = np.asarray(grade_shares, dtype=float)
    shares = shares / shares.sum()
    u = stats.norm.cdf(z)  # uniform per target
    present_from = 1.0 - p  # u above this -> grade >= 1
    grades = np.zeros(z.shape, dtype=np.int8)
    cum = np.cumsum(shares)[:-1]
    for t in range(4):
        ut = u[..., t]
        pos = ut > present_from[t]
        within = (ut - present_from[t]) / p[t]  # uniform on (0, 1) among present hips
        g = 1 + np.searchsorted(cum, within, side="right")
        grades[..., t] = np.where(pos, g, 0)
    return grades


def sample_grades(rng, n_subjects, n_visits, prevalence, correlation, grade_shares, side_rho=0.5, visit_rho=0.9):
    """Grades (subjects, visits, 2, 4) with the configured prevalence and label correlation."""
    rho = latent_correlation(correlation_matrix(correlation), prevalence)
    z = sample_latent(rng, n_subjects, n_visits, rho, side_rho, visit_rho)
    return grades_from_latent(z, prevalence, grade_shares)


def label_table(rows, rng, missing_fraction, short_sides_fraction):
    """labels.csv as the real files look: string cells, missing grades in their wild spellings.

    `rows`: dicts with cohort, subject, visit, side ('right'/'left') and one int grade per target.
    """
    records = []
    for row in rows:
        spelled = SIDE_SPELLINGS[row["side"]][1 if rng.random() < short_sides_fraction else 0]
        rec = {"cohort": row["cohort"], "subject": row["subject"], "visit": row["visit"], "side": spelled}
        for t in TARGETS:
            if rng.random() < missing_fraction:
                rec[t] = MISSING_SPELLINGS[rng.integers(len(MISSING_SPELLINGS))]
            else:
                rec[t] = str(int(row[t]))
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=list(LABEL_COLUMNS))


def binary_correlation(grades):
    """Pearson correlation of the binary labels (grade > 0) of an (n, 4) grade array, unknowns (-1) dropped."""
    g = np.asarray(grades)
    keep = (g >= 0).all(axis=1)
    return np.corrcoef((g[keep] > 0).astype(float), rowvar=False)
