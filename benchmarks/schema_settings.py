"""Training settings for the benchmarks: what the workflow builds for a default study's run (the config
schemas' defaults, filled in by Snakemake's validation; paper A's reference arm), with overrides.
Imported by the benchmark scripts from their own folder (`python benchmarks/bench_<x>.py`)."""

from pathlib import Path

from snakemake.utils import validate

from osteoloc.train.arms import reference_arm_settings
from osteoloc.train.settings import TrainSettings, training_block

SCHEMAS = Path(__file__).resolve().parents[1] / "workflow" / "schemas"


def default_settings(**overrides):
    """TrainSettings of the schemas' defaults (seed 0, no prior: the baseline) with `overrides`."""
    config = {"study": {}, "train": {}}
    for section, block in config.items():
        validate(block, str(SCHEMAS / f"{section}.schema.yaml"))
    block = training_block(config) | reference_arm_settings()
    return TrainSettings(**{**block, "seed": 0, "prior_lambda": 0.0, "prior_radius": 0.0, "prior_sigma": 0.0,
                            **overrides})
