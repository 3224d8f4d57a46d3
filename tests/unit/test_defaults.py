"""Defaults live in the config schemas (workflow/schemas/*.schema.yaml). Where library code keeps a default
of its own (a dataclass or a keyword people call without the workflow), it must be the schema's."""

from dataclasses import fields

import yaml

from helpers import SCHEMAS, keyword_defaults
from osteoloc.train.device import pick_device
from osteoloc.segment.unet import build_unet
from osteoloc.train.loop import TrainSettings


def schema_defaults(section, *block):
    """{key: default} of the scalar and list properties of a schema (or of a nested object `block`)."""
    spec = yaml.safe_load((SCHEMAS / f"{section}.schema.yaml").read_text())
    for key in block:
        spec = spec["properties"][key]
    return {key: value["default"] for key, value in spec["properties"].items()
            if "default" in value and not isinstance(value["default"], dict)}


def test_train_settings_defaults_are_the_schemas():
    schema = schema_defaults("train") | {"device": schema_defaults("study")["device"]}
    code = {f.name: f.default for f in fields(TrainSettings)}
    compared = set(schema) & set(code)
    assert compared >= {"epochs", "batch_size", "lr", "weights", "weights_path", "device", "eval_batch_size"}
    assert {key: code[key] for key in compared} == {key: schema[key] for key in compared}


def test_device_default_is_the_studys():
    assert keyword_defaults(pick_device)["name"] == schema_defaults("study")["device"]


def test_unet_defaults_are_the_segment_schemas():
    schema = schema_defaults("segment", "model")
    code = keyword_defaults(build_unet)
    assert set(code) == {"dropout", "norm"}
    assert code == {key: schema[key] for key in code}
