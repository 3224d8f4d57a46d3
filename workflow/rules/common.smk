# Shared by every rule file: config validation (defaults filled from the schemas), wildcard constraints,
# the list of final outputs each stage adds to, and the input functions that pick the cohort's files.
import json
from pathlib import Path

from snakemake.utils import validate

SECTIONS = ("study", "cohort", "preprocess", "train", "explain", "report", "segment")

for _section in SECTIONS:
    config.setdefault(_section, {})
    validate(config[_section], f"../schemas/{_section}.schema.yaml")

RESULTS = config["study"]["results"]
SEEDS = [int(s) for s in config["study"]["seeds"]]
MODELS = ["baseline", "prior"]

# Each stage appends the outputs that `rule all` must produce.
ALL_TARGETS = []


wildcard_constraints:
    model="|".join(MODELS),
    seed=r"\d+",


def results(*parts):
    """Path under the study's results folder."""
    return str(Path(RESULTS, *parts))


def log_path(*parts):
    """One log per job, beside the results, so a failed job's log survives the cleanup of its outputs."""
    return str(Path(RESULTS, "logs", *parts))


def as_json(value):
    """A config block as a canonical string param: changing any value in it reruns the rules that use it."""
    return json.dumps(value, sort_keys=True)


def library_code(script):
    """The osteoloc source files a rule's script imports: as inputs, editing one reruns that rule."""
    from osteoloc.provenance import library_sources

    return library_sources(workflow.source_path(f"../../scripts/{script}"))
