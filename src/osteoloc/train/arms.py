"""Study arms (docs/training.md "Arms"): named sets of overrides of the prior's training, the model
or its input, each trained with the reference arm's prior values (unless it sets its own radius / sigma, or
trains without the prior) for every seed on that seed's split.

An arm's config block (workflow/schemas/arms.schema.yaml) is nested by what it changes:

    prior: {enabled, shape, landmarks,                trained with the prior or not (a baseline of another
            landmark_noise_mm, radius, sigma}        geometry); penalty-mask shape; landmark source; noise
                                                     (mm); its own r and sigma (px) instead of the prior's
    model: {per_target, output_stride}               four single-output models; stride 16 or 32
    input: {landmark_crops, crop_px}                 each target's model sees a crop around its landmarks
    train: {epochs, batch_size, lr, ...}             any of the shared training values

`arm_settings` merges it with the defaults into the flat `osteoloc.train.settings.TrainSettings` keys the arm's job
passes (and only those: editing one arm changes only its own job's params). The paper's two models keep
their names: 'baseline' and 'prior' (the reference arm) are not arm names.
"""

import re

# the shapes' names, not train.prior: the workflow reads the arms while it parses, without torch
from osteoloc.names import DEFAULT_SHAPE, MODELS, PENALTY_SHAPE_NAMES

RESERVED = MODELS  # the paper's two models keep their names
NAME = re.compile(r"^[a-z0-9_]+$")
LANDMARK_SOURCES = ("automatic", "manual")

# Defaults of every arm key (the schema's; tests/unit/test_arms.py holds them equal).
DEFAULTS = {
    "prior": {"enabled": True, "shape": DEFAULT_SHAPE, "landmarks": "automatic", "landmark_noise_mm": 0.0,
              "radius": None, "sigma": None},
    "model": {"per_target": False, "output_stride": 32},
    "input": {"landmark_crops": False, "crop_px": 48},
}
# Shared training values an arm may override (the `train:` keys that change what is learnt).
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "rotation_degrees", "monitor",
              "early_stopping_patience", "early_stopping_min_epochs", "weights")


def check_arm_name(name):
    """Raise ValueError unless `name` is a usable arm name ([a-z0-9_]+, not 'baseline' or 'prior')."""
    if not NAME.match(str(name)) or name in RESERVED:
        raise ValueError(f"arms: {name!r} is not an arm name (letters a-z, digits and _; not "
                         f"{' or '.join(RESERVED)}, the paper's two models)")


def arm_settings(name, block):
    """The flat TrainSettings overrides of arm `name` from its config block (see the module docstring).

    Returns a dict with every arm key filled (prior_shape, landmark_source, landmark_noise_mm, per_target,
    output_stride, crop_px) plus the block's `train` overrides. crop_px is 0 unless input.landmark_crops;
    landmark crops imply per-target models (each target is classified from its own crop). Raises
    ValueError naming the arm for an unknown key or value.
    """
    check_arm_name(name)
    return _flat_settings(name, block)


def reference_arm_settings():
    """The arm keys of the paper's two models, 'baseline' and 'prior' (the reference arm): those of an empty
    arm block, paper A's."""
    return _flat_settings("prior", {})


def _flat_settings(name, block):
    block = dict(block or {})
    unknown = set(block) - set(DEFAULTS) - {"train"}
    if unknown:
        raise ValueError(f"arms.{name}: unknown section(s) {sorted(unknown)}; use {sorted([*DEFAULTS, 'train'])}")
    merged = {}
    for section, defaults in DEFAULTS.items():
        values = dict(block.get(section) or {})
        extra = set(values) - set(defaults)
        if extra:
            raise ValueError(f"arms.{name}.{section}: unknown key(s) {sorted(extra)}; use {sorted(defaults)}")
        merged[section] = {**defaults, **values}
    prior, model, inputs = merged["prior"], merged["model"], merged["input"]
    if prior["shape"] not in PENALTY_SHAPE_NAMES:
        raise ValueError(f"arms.{name}.prior.shape: {prior['shape']!r}, choose one of {sorted(PENALTY_SHAPE_NAMES)}")
    if prior["landmarks"] not in LANDMARK_SOURCES:
        raise ValueError(f"arms.{name}.prior.landmarks: {prior['landmarks']!r}, choose one of {LANDMARK_SOURCES}")
    if not float(prior["landmark_noise_mm"]) >= 0:
        raise ValueError(f"arms.{name}.prior.landmark_noise_mm must be >= 0, not {prior['landmark_noise_mm']!r}")
    if int(model["output_stride"]) not in (16, 32):
        raise ValueError(f"arms.{name}.model.output_stride must be 16 or 32, not {model['output_stride']!r}")
    if inputs["landmark_crops"] and not int(inputs["crop_px"]) >= 8:
        raise ValueError(f"arms.{name}.input.crop_px must be at least 8 pixels, not {inputs['crop_px']!r}")
    train = dict(block.get("train") or {})
    extra = set(train) - set(TRAIN_KEYS)
    if extra:
        raise ValueError(f"arms.{name}.train: key(s) {sorted(extra)} cannot differ between arms; "
                         f"an arm may override {list(TRAIN_KEYS)}")
    if prior["radius"] is not None and not float(prior["radius"]) >= 0:
        raise ValueError(f"arms.{name}.prior.radius must be a number >= 0 (pixels) or null, not {prior['radius']!r}")
    if prior["sigma"] is not None and not float(prior["sigma"]) > 0:
        raise ValueError(f"arms.{name}.prior.sigma must be a number > 0 (pixels) or null, not {prior['sigma']!r}")
    if not isinstance(prior["enabled"], bool):
        raise ValueError(f"arms.{name}.prior.enabled must be true or false, not {prior['enabled']!r}")
    crops = bool(inputs["landmark_crops"])
    # prior.enabled, radius and sigma choose the run's prior values (`arms_without_prior`,
    # `arm_prior_values`), which the rule passes apart from the training settings
    return {
        **train,
        "prior_shape": str(prior["shape"]),
        "landmark_source": str(prior["landmarks"]),
        "landmark_noise_mm": float(prior["landmark_noise_mm"]),
        "per_target": bool(model["per_target"]) or crops,
        "output_stride": int(model["output_stride"]),
        "crop_px": int(inputs["crop_px"]) if crops else 0,
    }


def arms_without_prior(arms):
    """Names of the config's arms with prior.enabled false: trained as the baseline is (no prior values)."""
    return [name for name, block in (arms or {}).items()
            if not dict((block or {}).get("prior") or {}).get("enabled", True)]


def arm_prior_values(arms, values):
    """{arm: the prior's values it trains with}: `values` ({"lambda", "radius", "sigma"}, the reference
    arm's fixed values) with each arm's own prior.radius / prior.sigma where it sets them."""
    out = {}
    for name, block in (arms or {}).items():
        prior = dict((block or {}).get("prior") or {})
        out[name] = {**values, **{k: float(prior[k]) for k in ("radius", "sigma") if prior.get(k) is not None}}
    return out


def all_arm_settings(arms):
    """{name: arm_settings(name, block)} of the config's `arms:` section, in config order."""
    return {name: arm_settings(name, block) for name, block in (arms or {}).items()}
