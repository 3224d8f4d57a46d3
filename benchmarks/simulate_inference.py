"""Do the primary intervals cover? Coverage of the ablation's comparison intervals on simulated studies.

Each simulated study is the science study's shape: one fixed test cohort scored by every seed (seeds and
subjects crossed), 8 seeds, a paired per-hip difference arm - reference over the positive hips of one
target (each hip positive with probability `--positive`, both hips of a subject sharing its effect), made
of a true difference + a seed effect + a subject effect + a seed x subject effect + hip noise, and a share
of hips per seed whose map is undefined (left out of that seed, as the ablation does). Per study the 95 %
interval of three methods:
- bootstrap: `stats.hierarchical_bootstrap(crossed=True)`, the percentile interval the ablation used;
- seeds t: the t interval over the 8 per-seed differences (`ablation.t_interval`);
- crossed: `stats.crossed_inference` (crossed random-effects variance, Satterthwaite df).
A scenario "auc" draws binormal scores whose separation varies by seed and subject and compares the AUCs
(true difference: the mean over seeds of the population AUC difference, by quadrature).
Coverage over `--sims` studies per scenario, with its binomial standard error, and the median width.

    PYTHONPATH=$PWD/src nice -n 10 .venv/bin/python benchmarks/simulate_inference.py [--sims 1000] [--n-boot 2000]
"""

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

from osteoloc.report.ablation import t_interval
from osteoloc.report.stats import crossed_inference, hierarchical_bootstrap

# per scenario: sd of the seed, subject, seed x subject and hip terms of the difference (crop px)
SCENARIOS = {
    "seed variance dominates": {"seed": 1.5, "subject": 1.0, "cell": 1.0, "hip": 3.0},
    "subject variance dominates": {"seed": 0.1, "subject": 3.0, "cell": 1.0, "hip": 1.0},
    "both": {"seed": 0.5, "subject": 2.0, "cell": 1.0, "hip": 2.0},
}
EFFECT = -1.0


def simulate_mean(rng, sd, n_seeds=8, n_subjects=190, positive=0.4, undefined=0.05):
    """Long frame (model, seed, subject, side, value) of one simulated study's positive hips."""
    positive_hips = rng.random((n_subjects, 2)) < positive
    subject, side = np.nonzero(positive_hips)
    subject_effect = rng.normal(0, sd["subject"], n_subjects)
    rows = []
    for s in range(n_seeds):
        seed_effect = rng.normal(0, sd["seed"])
        cell = rng.normal(0, sd["cell"], n_subjects)
        keep = rng.random(len(subject)) >= undefined
        diff = EFFECT + seed_effect + subject_effect[subject] + cell[subject] + rng.normal(0, sd["hip"], len(subject))
        reference = rng.normal(10, 3, len(subject))
        for model, value in (("prior", reference), ("arm", reference + diff)):
            rows.append(pd.DataFrame({"model": model, "seed": s, "subject": subject[keep], "side": side[keep],
                                      "value": value[keep]}))
    return pd.concat(rows, ignore_index=True)


AUC_SD = {"seed": 0.25, "subject": 0.5}  # sd of the arm's extra separation by seed, and of the subject's latent score


def simulate_auc(rng, n_seeds=8, n_subjects=190, prevalence=0.4, gain=0.3):
    """Both hips of every subject, labels fixed across seeds; the reference separates the classes by 1.0,
    the arm by 1.0 + gain + a seed effect; a subject's latent score is shared by both arms and seeds."""
    label = (rng.random((n_subjects, 2)) < prevalence).astype(int).ravel()
    subject = np.repeat(np.arange(n_subjects), 2)
    side = np.tile([0, 1], n_subjects)
    latent = rng.normal(0, AUC_SD["subject"], n_subjects)[subject]
    rows = []
    for s in range(n_seeds):
        separation = {"prior": 1.0, "arm": 1.0 + gain + rng.normal(0, AUC_SD["seed"])}
        for model, shift in separation.items():
            score = label * shift + latent + rng.normal(0, 1.0, len(label))
            rows.append(pd.DataFrame({"model": model, "seed": s, "subject": subject, "side": side,
                                      "label": label, "prob": score}))
    return pd.concat(rows, ignore_index=True)


def true_auc_difference(gain=0.3):
    """E over the seed effect of AUC(arm) - AUC(prior) for binormal scores: the latent score adds variance
    to both classes (total sd sqrt(1 + sd_subject^2) each)."""
    scale = np.sqrt(2 * (1 + AUC_SD["subject"] ** 2))
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    arm = np.sum(weights * stats.norm.cdf((1.0 + gain + AUC_SD["seed"] * nodes) / scale)) / weights.sum()
    return arm - stats.norm.cdf(1.0 / scale)


def intervals(frame, value, statistic, n_boot, seed):
    """{method: (low, high)} of one simulated study."""
    args = (frame, value, "model", "seed", "subject", "side", "arm", "prior")
    boot = hierarchical_bootstrap(*args, statistic=statistic, n_boot=n_boot, seed=seed, crossed=True)
    crossed = crossed_inference(*args, statistic=statistic, crossed=True)
    return {"bootstrap": (boot["ci_low"], boot["ci_high"]), "seeds t": t_interval(crossed["per_seed"]),
            "crossed": (crossed["ci_low"], crossed["ci_high"])}


def coverage(sims, n_boot, seed):
    rows = []
    rng = np.random.default_rng(seed)
    for scenario in [*SCENARIOS, "auc"]:
        truth = true_auc_difference() if scenario == "auc" else EFFECT
        hits = {}
        started = time.perf_counter()
        for sim in range(sims):
            if scenario == "auc":
                found = intervals(simulate_auc(rng), ["label", "prob"], "auc", n_boot, sim)
            else:
                found = intervals(simulate_mean(rng, SCENARIOS[scenario]), "value", None, n_boot, sim)
            for method, (low, high) in found.items():
                hits.setdefault(method, []).append((low <= truth <= high, high - low))
        for method, outcomes in hits.items():
            covered = np.array([c for c, _ in outcomes], dtype=float)
            rows.append({"scenario": scenario, "method": method, "coverage": covered.mean(),
                         "coverage_se": covered.std() / np.sqrt(len(covered)),
                         "median_width": float(np.median([w for _, w in outcomes])), "sims": sims})
        print(f"{scenario}: {sims} studies in {time.perf_counter() - started:.0f} s", flush=True)
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1000, help="simulated studies per scenario")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples per study")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = coverage(args.sims, args.n_boot, args.seed)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
