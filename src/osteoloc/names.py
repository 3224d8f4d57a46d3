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
    whose cue_energy is defined, i.e. that carries the cue; "undefined": share of the positive test hips
    whose map has zero mass; "all": mean over every test hip where the value is defined; "interventions":
    mean over the moved lesions of the phantom's interventions, report.interventions)."""
    label: str
    better: str
    source: str


ABLATION_METRICS = {
    "auc": AblationMetric("AUC", "higher", "predictions"),
    "com_distance": AblationMetric("CoM to automatic landmarks (px)", "lower", "positives"),
    "peak_distance": AblationMetric("peak to automatic landmarks (px)", "lower", "positives"),
    "com_to_landmark": AblationMetric("CoM to exact landmarks (px)", "lower", "positives"),
    "peak_to_landmark": AblationMetric("peak to exact landmarks (px)", "lower", "positives"),
    "com_to_lesion": AblationMetric("CoM to lesion centre (px)", "lower", "positives"),
    "peak_to_lesion": AblationMetric("peak to lesion centre (px)", "lower", "positives"),
    "spread": AblationMetric("spread (px)", "lower", "positives"),
    "pointing_hit": AblationMetric("pointing game", "higher", "positives"),
    "energy_in_mask": AblationMetric("energy in lesion", "higher", "positives"),
    "energy_lift": AblationMetric("energy lift (energy / area share)", "higher", "positives"),
    "lesion_vs_landmark": AblationMetric("CoM nearer lesion than landmark (px)", "higher", "positives"),
    "undefined_map": AblationMetric("all-zero maps (share)", "lower", "undefined"),
    "penalty_constant": AblationMetric("constant prior penalty (share)", "lower", "all"),
    "auc_no_cue": AblationMetric("AUC without cue", "higher", "twin"),
    "auc_drop": AblationMetric("AUC drop without cue", "lower", "twin"),
    "cue_energy": AblationMetric("energy on cue", "lower", "cue"),
    "com_follow": AblationMetric("CoM follows a moved lesion (per mm)", "higher", "interventions"),
}
# Localisation metrics with chance and ceiling at the run's grid (explain writes `<metric>_uniform`,
# `_random_cell`, `_ceiling` and the landmark-only control's `_control` beside each).
CALIBRATED_METRICS = ("com_to_landmark", "peak_to_landmark", "com_to_lesion", "peak_to_lesion", "pointing_hit",
                      "energy_in_mask", "energy_lift", "lesion_vs_landmark")
PENALTY_WARNING = 0.10  # the report warns when more test hips than this have a constant prior penalty

# The report's output ids and captions (report.smk names its files from these; report/tables.py and
# report/figures.py draw them).
TABLES = {"table1": "Table 1", "table2": "Table 2", "tableA1": "Table A1", "tableA2": "Table A2",
          "auc": "AUC table", "calibration": "Calibration table", "true_localisation": "True localisation table",
          "calibrated": "Calibrated localisation table",
          "stratified": "Localisation by lesion-landmark distance"}
TABLE_IDS = tuple(TABLES)
SEED_LEVEL_INPUT = ("seed_level_input", "Seed-level input")  # the CSV Table A1 is computed from
SUMMARY_TABLES = ("tableA1", "auc", "true_localisation", "calibrated")  # the tables summary.md quotes
FIGURES = {"figure2": "Figure 2", "figure3": "Figure 3", "figure4": "Figure 4", "figure5": "Figure 5",
           "figure6": "Figure 6", "figureA2": "Figure A2", "reliability": "Reliability diagrams"}
FIGURE_IDS = tuple(FIGURES)

# The prior's penalty-mask shapes (train/prior.py defines them; the arms' config names them).
PENALTY_SHAPE_NAMES = ("plateau_gaussian", "disc", "linear", "cauchy")
DEFAULT_SHAPE = "plateau_gaussian"  # paper A's
