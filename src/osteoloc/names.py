"""Names shared by every stage: the four osteophyte targets and the two sides (in the one order every array
uses), the trained models and the study arms' reference, the metrics with their direction."""

from dataclasses import dataclass

TARGETS = ("osteo_fem_sup", "osteo_fem_inf", "osteo_acet_sup", "osteo_acet_inf")
SHORT_NAMES = {t: t.removeprefix("osteo_") for t in TARGETS}
SIDES = ("right", "left")
UNKNOWN = -1

MODELS = ("baseline", "prior")  # paper A's two models; study arms have other names
REFERENCE_ARM = "prior"  # the paper's prior model: every arm is compared with it
CONFIDENCE = 0.95  # level of the t interval of the mean difference over seeds
# The table and figure ids of rule report_ablation -> their labels in the HTML report.
ABLATION_TABLE = ("ablation", "Ablation table")
ABLATION_FIGURE = ("ablation_forest", "Ablation forest plot")


@dataclass(frozen=True)
class AblationMetric:
    """label: how tables and figures name it; better: "lower" or "higher"; source: what it is computed from
    ("predictions": AUC over the test hips with a known label; "positives": mean over the positive test
    hips where the value is defined; "twin": needs twin_predictions.csv; "cue": mean over every test hip
    whose cue_energy is defined, i.e. that carries the cue)."""
    label: str
    better: str
    source: str


ABLATION_METRICS = {
    "auc": AblationMetric("AUC", "higher", "predictions"),
    "com_distance": AblationMetric("CoM distance (px)", "lower", "positives"),
    "peak_distance": AblationMetric("peak distance (px)", "lower", "positives"),
    "spread": AblationMetric("spread (px)", "lower", "positives"),
    "pointing_hit": AblationMetric("pointing game", "higher", "positives"),
    "energy_in_mask": AblationMetric("energy in lesion", "higher", "positives"),
    "auc_no_cue": AblationMetric("AUC without cue", "higher", "twin"),
    "auc_drop": AblationMetric("AUC drop without cue", "lower", "twin"),
    "cue_energy": AblationMetric("energy on cue", "lower", "cue"),
}
