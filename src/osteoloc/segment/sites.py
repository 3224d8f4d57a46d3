"""Per-site settings: which target a site segments, where its patch centres, its scale and augmentation."""

from dataclasses import dataclass

from osteoloc.names import TARGETS

# The head points BoneFinder's circle fit uses (docs/method.md section 2.3); their circle's diameter is our
# reference length.
HEAD_CIRCLE_INDICES = (13, 78, 14, 15, 16, 17, 18, 19, 20, 21)


@dataclass(frozen=True)
class Site:
    name: str
    target: str
    dp: float  # pixel size as a fraction of the reference length, for a patch of `dp_patch_size` pixels
    n_augment: int  # extra augmented samples per training/validation image
    displacement: float  # max centre displacement as a fraction of the patch size (0 = none)
    centre: tuple | None  # BoneFinder indices whose mean is the centre; None = the target's group

    @property
    def target_index(self):
        return TARGETS.index(self.target)


def parse_sites(block):
    """The `segment.sites` config block -> {name: Site}; a clear error for an unknown target."""
    sites = {}
    for name, spec in block.items():
        target = spec["target"]
        if target not in TARGETS:
            raise ValueError(f"segment.sites.{name}: unknown target {target!r} (one of {', '.join(TARGETS)})")
        centre = spec.get("centre")
        sites[name] = Site(name=name, target=target, dp=float(spec["dp"]),
                           n_augment=int(spec.get("n_augment", 7)),
                           displacement=float(spec.get("displacement", 0.0)),
                           centre=tuple(int(i) for i in centre) if centre else None)
    return sites
