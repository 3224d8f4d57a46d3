"""Defaults live in the config schemas (workflow/schemas/*.schema.yaml). Where library code keeps a default
of its own (a dataclass or a keyword people call without the workflow), it must be the schema's."""

from dataclasses import MISSING, fields

import yaml
from helpers import SCHEMAS, keyword_defaults, schema_config

from osteoloc.train.device import pick_device
from osteoloc.segment.unet import build_unet
from osteoloc.train.arms import reference_arm_settings
from osteoloc.train.settings import TrainSettings, training_block


def schema_defaults(section, *block):
    """{key: default} of the scalar and list properties of a schema (or of a nested object `block`)."""
    spec = yaml.safe_load((SCHEMAS / f"{section}.schema.yaml").read_text())
    for key in block:
        spec = spec["properties"][key]
    return {key: value["default"] for key, value in spec["properties"].items()
            if "default" in value and not isinstance(value["default"], dict)}


def test_train_settings_declare_no_default_and_the_config_fills_every_field():
    assert all(f.default is MISSING and f.default_factory is MISSING for f in fields(TrainSettings))
    # the workflow's block (shared keys, reference arm), the seed and the prior's three values: every field
    block = training_block(schema_config("study", "train")) | reference_arm_settings()
    per_run = {"seed", "prior_lambda", "prior_radius", "prior_sigma"}
    assert set(block) | per_run == {f.name for f in fields(TrainSettings)} and not set(block) & per_run
    settings = TrainSettings.for_run(block, 3, {"lambda": 1, "radius": 4, "sigma": 13})
    assert (settings.epochs, settings.device, settings.prior_sigma) == (schema_defaults("train")["epochs"],
                                                                        schema_defaults("study")["device"], 13.0)


def test_device_default_is_the_studys():
    assert keyword_defaults(pick_device)["name"] == schema_defaults("study")["device"]


def test_unet_defaults_are_the_segment_schemas():
    schema = schema_defaults("segment", "model")
    code = keyword_defaults(build_unet)
    assert set(code) == {"dropout", "norm"}
    assert code == {key: schema[key] for key in code}
