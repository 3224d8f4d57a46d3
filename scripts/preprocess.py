"""Rule `preprocess`: the cohort (DICOM + .pts + labels, or the group's HDF5 + .pts) -> study HDF5 + exclusions."""

import json
import logging

from osteoloc.io.group_h5 import import_group_study
from osteoloc.preprocess import preprocess_study

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
settings = json.loads(snakemake.params.settings)  # noqa: F821
inputs = snakemake.input  # noqa: F821
common = dict(groups=settings["groups"], max_excluded_fraction=settings["max_excluded_fraction"])
try:
    if snakemake.params.source == "group_hdf5":  # noqa: F821
        import_group_study(inputs.group_hdf5, inputs.points_dir, inputs.labels, snakemake.output.study,  # noqa: F821
                           snakemake.output.exclusions, spacing_mm=settings["spacing_mm"],  # noqa: F821
                           crop_size=settings["crop_size"], **common)
    else:
        truth = getattr(inputs, "truth", None) or []  # cohort_truth(): one path, or [] without truth
        truth = [truth] if isinstance(truth, str) else list(truth)
        preprocess_study(inputs.manifest, inputs.labels, snakemake.output.study,  # noqa: F821
                         snakemake.output.exclusions, crop_size=settings["crop_size"],  # noqa: F821
                         spacing_mm=settings["spacing_mm"], truth_path=truth[0] if truth else None, **common)
except Exception:
    logging.exception("preprocessing failed")
    raise
