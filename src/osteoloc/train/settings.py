"""One run's settings, `TrainSettings`: built once from the validated config (`training_block` plus the
run's arm, seed and prior values), written into the run's checkpoints (`as_dict`) and read back from them as
the same object (`from_checkpoint`).

Defaults live only in the config schemas (workflow/schemas/train.schema.yaml, study.schema.yaml,
arms.schema.yaml), which Snakemake's validation fills in: every field here is required, and a checkpoint
whose settings lack one is refused rather than completed with a guess.

Torch is imported only to read a checkpoint: the workflow imports this module while it parses.
"""

import dataclasses
from dataclasses import dataclass

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")
BN_STATS = ("running", "recomputed")
# The config keys every run of a study shares: the `train:` section's ...
SHARED_TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "lr_schedule", "warmup_epochs",
                     "grad_clip", "bn_stats", "rotation_degrees", "monitor", "early_stopping_patience",
                     "early_stopping_min_epochs", "weights", "weights_path", "precision", "channels_last", "eval_batch_size")
# ... and the `study:` section's.
SHARED_STUDY_KEYS = ("device", "deterministic")


def training_block(config):
    """The settings every run of the study shares, from the validated config (its `train` and `study`
    sections): the block the workflow passes each training job, before the arm's keys, seed and prior."""
    return {**{key: config["train"][key] for key in SHARED_TRAIN_KEYS},
            **{key: config["study"][key] for key in SHARED_STUDY_KEYS}}


@dataclass(frozen=True)
class TrainSettings:
    """Everything that fixes a run: the `train:` config section's shared values, `study.device` and
    `study.deterministic`, the arm's keys (`osteoloc.train.arms.arm_settings`; the paper's two models take
    `reference_arm_settings`), the run's seed and its prior values. Every field is required (the defaults
    are the schemas').

    prior_lambda 0 trains the baseline; with prior_sigma > 0 its prior loss is still measured (detached)
    for comparison, with prior_sigma 0 it is not computed (NaN in the history). Radius and sigma are in
    input pixels.
    """

    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str  # adam (weight decay as an L2 term in the gradient) or adamw (decoupled decay)
    lr_schedule: str  # constant or cosine (decay to 0 over the run's steps), see loop.lr_factor
    warmup_epochs: int  # linear warm-up from lr / warm-up steps to lr over this many epochs
    grad_clip: float  # > 0: clip the gradients' global L2 norm to this before each step; 0 = off
    bn_stats: str  # batch-norm statistics validated with: running (momentum) or recomputed
    rotation_degrees: float
    monitor: str  # validation loss that picks the best epoch: "bce" or "total"
    early_stopping_patience: int  # stop after this many epochs without a better `monitor` loss; 0 = off
    early_stopping_min_epochs: int  # early stopping never ends a run before this many epochs (>= epochs: never)
    weights: str
    weights_path: str
    device: str
    deterministic: bool  # study.deterministic: reproducible kernels (device.configure_determinism)
    precision: str  # fp32, fp16 (CUDA only, with a GradScaler) or bf16 (device.PRECISIONS, checked there)
    channels_last: bool
    eval_batch_size: int
    prior_lambda: float
    prior_radius: float
    prior_sigma: float  # 0 = no prior measured at all (the baseline's history shows NaN)
    # The study arms' keys (osteoloc.train.arms, workflow/schemas/arms.schema.yaml).
    prior_shape: str  # a key of prior.PENALTY_SHAPES
    landmark_source: str  # the prior's landmarks: automatic (/landmarks/groups) or manual
    landmark_noise_mm: float  # sd of the noise added to the prior's landmarks, mm
    output_stride: int  # 32 or 16 (model.build_model)
    per_target: bool  # four single-output models, each with its own target's prior
    crop_px: int  # > 0: each target's model sees a crop_px sub-crop around its landmarks (per target)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {self.lr_schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be at least 0 and below epochs ({self.epochs}), "
                             f"not {self.warmup_epochs!r}")
        if self.early_stopping_patience < 0 or self.early_stopping_min_epochs < 0:
            raise ValueError(f"early_stopping_patience and early_stopping_min_epochs must be at least 0, not "
                             f"{self.early_stopping_patience!r} and {self.early_stopping_min_epochs!r}")
        if self.bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, not {self.bn_stats!r}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 = off), not {self.grad_clip!r}")
        if self.monitor not in ("bce", "total"):
            raise ValueError(f"monitor must be 'bce' or 'total', not {self.monitor!r}")
        if self.prior_lambda > 0 and self.prior_sigma <= 0:
            raise ValueError("a prior run (prior_lambda > 0) needs prior_sigma > 0")
        if self.crop_px and not self.per_target:
            raise ValueError("landmark crops (crop_px > 0) need per_target models")

    def as_dict(self):
        """The settings as the checkpoints record them (`from_dict` reads them back)."""
        return dataclasses.asdict(self)

    @classmethod
    def for_run(cls, training, seed, prior):
        """Settings of one run: the training block (`training_block` plus the arm's keys), the seed and the
        prior's {"lambda", "radius", "sigma"} (`grid.point_values`)."""
        return cls(seed=int(seed), **training, prior_lambda=float(prior["lambda"]),
                   prior_radius=float(prior["radius"]), prior_sigma=float(prior["sigma"]))

    @classmethod
    def from_dict(cls, values, source):
        """The settings of an `as_dict` record (a checkpoint's "config"); a record that is not one, lacks a
        field or holds an unknown one is a ValueError naming `source` (a checkpoint of an older or newer
        osteoloc: train the run again)."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: holds no run settings ('config'); train the run again")
        names = {field.name for field in dataclasses.fields(cls)}
        missing, unknown = sorted(names - set(values)), sorted(set(values) - names)
        if missing or unknown:
            raise ValueError(f"{source}: its run settings do not match this osteoloc's "
                             f"(missing {missing}, unknown {unknown}); train the run again")
        return cls(**values)

    @classmethod
    def from_checkpoint(cls, path):
        """The settings a best.pt records under "config" (contracts.md section 4)."""
        import torch

        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return cls.from_dict(checkpoint.get("config") if isinstance(checkpoint, dict) else None, path)
