"""Rule `preprocess`: the cohort (DICOM + .pts + labels, or the group's HDF5 + .pts) -> study HDF5 + exclusions."""

import json

from osteoloc.preprocess import import_group_study, preprocess_study
from osteoloc.runner import run_script


def main(smk):
    settings = json.loads(smk.params.settings)
    inputs = smk.input
    common = dict(groups=settings["groups"], max_excluded_fraction=settings["max_excluded_fraction"])
    if smk.params.source == "group_hdf5":
        return import_group_study(inputs.group_hdf5, inputs.points_dir, inputs.labels, smk.output.study,
                                  smk.output.exclusions, spacing_mm=settings["spacing_mm"],
                                  crop_size=settings["crop_size"], **common)
    truth = getattr(inputs, "truth", None) or []  # cohort_truth(): one path, or [] without truth
    truth = [truth] if isinstance(truth, str) else list(truth)
    return preprocess_study(inputs.manifest, inputs.labels, smk.output.study, smk.output.exclusions,
                            crop_size=settings["crop_size"], spacing_mm=settings["spacing_mm"],
                            truth_path=truth[0] if truth else None, points_unit=settings["points_unit"],
                            accept_mirrored=settings["accept_mirrored"], **common)


run_script(snakemake, main)  # noqa: F821
