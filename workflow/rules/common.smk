# Shared by every rule file: config validation (defaults filled from the schemas), wildcard constraints,
# the list of final outputs each stage adds to, and the input functions that pick the cohort's files.
import json
from pathlib import Path

from snakemake.utils import validate

from osteoloc.cohort.phantom.settings import writes_twins
from osteoloc.names import MODELS
from osteoloc.provenance import library_sources
from osteoloc.train.arms import (
    all_arm_settings,
    arm_prior_values,
    arms_without_prior,
    reference_arm_settings,
)

SECTIONS = (
    "study",
    "cohort",
    "preprocess",
    "train",
    "arms",
    "explain",
    "report",
    "segment",
    "apply",
)

# A misspelt section (`preproces:`) would otherwise be ignored and the study run on the defaults.
_unknown = sorted(set(config) - set(SECTIONS))
if _unknown:
    raise ValueError(
        f"unknown config section(s) {', '.join(map(repr, _unknown))}: the sections are {', '.join(SECTIONS)} "
        "(a misspelt name? a nested key indented too little?)"
    )

for _section in SECTIONS:
    config.setdefault(_section, {})
    validate(config[_section], f"../schemas/{_section}.schema.yaml")

# The files each cohort source reads (cohort.schema.yaml): named here when empty, rather than by a
# MissingInputException with a blank file list.
SOURCE_PATHS = {
    "phantom": (),
    "manifest": ("manifest", "labels"),
    "group_hdf5": ("group_hdf5", "points_dir", "labels"),
}
_missing = [
    f"cohort.{key}"
    for key in SOURCE_PATHS[config["cohort"]["source"]]
    if not str(config["cohort"][key]).strip()
]
if _missing:
    raise ValueError(
        f"cohort.source is {config['cohort']['source']!r}, which reads {', '.join(_missing)}: "
        "give the path(s) in the config (relative to the working directory)"
    )

RESULTS = config["study"]["results"]
SEEDS = [int(s) for s in config["study"]["seeds"]]
MODELS = list(
    MODELS
)  # the paper's two models (osteoloc.names); 'prior' is the reference arm
# Study arms (docs/training.md "Arms"): name -> the flat training settings the arm overrides.
ARMS = all_arm_settings(config["arms"])
NO_PRIOR_ARMS = arms_without_prior(
    config["arms"]
)  # trained without the prior, as the baseline
RUNS = MODELS + list(ARMS)  # every trained model: the `model` wildcard

# Each stage appends the outputs that `rule all` must produce.
ALL_TARGETS = []


wildcard_constraints:
    model="|".join(RUNS),
    seed=r"\d+",


def phantom_twins():
    """Whether the phantom also writes counterfactual twins (cohort.phantom.cue.twins): the twin study,
    the explain stage's twin predictions and the ablation's shortcut columns exist only then.
    """
    cohort = config["cohort"]
    return cohort["source"] == "phantom" and writes_twins(cohort["phantom"])


def lesion_placement():
    """The phantom's lesion placement design (cohort.phantom.lesion_placement.design), "" without a phantom:
    the report's primary comparisons depend on it (report.comparisons.design_primaries)."""
    cohort = config["cohort"]
    if cohort["source"] != "phantom":
        return ""
    return cohort["phantom"].get("lesion_placement", {}).get("design", "landmark")


def interventions_on():
    """Whether the localisation-by-intervention rules exist (explain.interventions.enabled; phantom only)."""
    enabled = config.get("explain", {}).get("interventions", {}).get("enabled", False)
    return bool(enabled) and config.get("cohort", {}).get("source") == "phantom"


def results(*parts):
    """Path under the study's results folder."""
    return str(Path(RESULTS, *parts))


def log_path(*parts):
    """One log per job, beside the results, so a failed job's log survives the cleanup of its outputs."""
    return str(Path(RESULTS, "logs", *parts))


def as_json(value):
    """A config block as a canonical string param: changing any value in it reruns the rules that use it."""
    return json.dumps(value, sort_keys=True)


def library_code(script, also=()):
    """The osteoloc source files a rule's script imports: as inputs, editing one reruns that rule. `also`:
    modules the library imports only for some studies (inside a function), which this study needs. Paths
    inside the working directory are relative to it, so a moved or copied checkout keeps its results.
    """
    here = Path.cwd()
    sources = [
        Path(p)
        for p in library_sources(workflow.source_path(f"../../scripts/{script}"), also)
    ]
    return [
        str(p.relative_to(here)) if p.is_relative_to(here) else str(p) for p in sources
    ]


def train_file(name, model="{model}", seed="{seed}"):
    """A training run's file (contracts.md section 4); wildcards unless model and seed are given."""
    return results("train", model, f"seed{seed}", name)


def explain_file(name, model="{model}", seed="{seed}"):
    """An explain run's file (contracts.md section 5); wildcards unless model and seed are given."""
    return results("explain", model, f"seed{seed}", name)


def explain_outputs(name, models=MODELS):
    """The explain file `name` of every (model, seed), models outer: the order of `explain_runs`.
    models: the paper's two by default; RUNS or list(ARMS) for the arms."""
    return expand(explain_file(name), model=models, seed=SEEDS)


def explain_runs(models=MODELS):
    """(model, seed) of every run as a JSON param, in the order `explain_outputs` lists their files."""
    return as_json([[model, seed] for model in models for seed in SEEDS])


# snakemake's report() under a name its parser does not take for the `report:` keyword at a line start.
report_file = report
REPORT_SUFFIXES = {"tables": ("csv", "md", "tex"), "figures": ("png", "pdf")}


def report_outputs(kind, labels, category, suffixes=None, stems=None, **report_options):
    """Named outputs of report tables (kind "tables") or figures ("figures"): for each id -> labels of
    `labels`, `<id>` is results/report/<kind>/<id>.csv (or .png), shown in the HTML report with the caption
    workflow/report/<id>.rst, and `<id>_md`, `<id>_tex` (or `<id>_pdf`) are its siblings (`suffixes`
    overrides REPORT_SUFFIXES; the first one is shown). `stems`: id -> (file stem, caption stem) where
    they differ from the id."""
    first, *siblings = suffixes or REPORT_SUFFIXES[kind]
    outputs = {}
    for output_id, output_labels in labels.items():
        stem, caption = (stems or {}).get(output_id, (output_id, output_id))
        outputs[output_id] = report_file(
            results("report", kind, f"{stem}.{first}"),
            caption=workflow.source_path(f"../report/{caption}.rst"),
            category=category,
            labels=output_labels,
            **report_options,
        )
        for suffix in siblings:
            outputs[f"{output_id}_{suffix}"] = results(
                "report", kind, f"{stem}.{suffix}"
            )
    return outputs


def job_resources(block):
    """The portable resources of a config `resources` block (threads are declared apart)."""
    return {key: block[key] for key in ("mem_mb", "runtime", "gpu")}
