"""What `osteoloc apply` does around the workflow: the apply run's config (the study's preprocessing settings,
the new cohort, the two folders), a label table of unknown grades when the cohort has none, and the
snakemake call of the target `apply_all` (docs/apply.md)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from osteoloc.apply.study import check_folders, finished_study
from osteoloc.io.atomic import write_csv, write_text
from osteoloc.io.manifest import read_manifest
from osteoloc.names import SIDES, TARGETS

REPO = Path(__file__).resolve().parents[3]  # the checkout whose src/ this is: its Snakefile and config.yaml
TARGET = "apply_all"


def gallery_path(out_dir):
    return Path(out_dir) / "apply" / "gallery" / "index.html"


def unknown_labels(manifest_path, labels_path):
    """A long label table with every hip of the manifest and every grade unknown (a hip without a label row
    would be excluded by the preprocessing)."""
    manifest = read_manifest(manifest_path)
    keys = manifest[["cohort", "subject", "visit"]] if "cohort" in manifest else manifest[["subject", "visit"]]
    keys = keys.astype(str).drop_duplicates()
    rows = [dict(key, side=side, **dict.fromkeys(TARGETS, "")) for key in keys.to_dict("records") for side in SIDES]
    write_csv(pd.DataFrame(rows), labels_path)


def apply_config(study_dir, manifest_path, labels_path, out_dir):
    """The apply run's config block (given after config.yaml): the study's crop size, spacing and groups
    (from its study HDF5), the new cohort as a manifest source, the two folders as absolute paths."""
    study = finished_study(study_dir)
    settings = study.settings
    folder = Path(study_dir).resolve()
    name = folder.parent.name if folder.name == "results" else folder.name  # the study's checkout, usually
    return {"study": {"name": f"{name} applied to {Path(manifest_path).name}", "results": str(Path(out_dir).resolve())},
            "cohort": {"source": "manifest", "manifest": str(Path(manifest_path).resolve()),
                       "labels": str(Path(labels_path).resolve()), "bonefinder": {"command": ""}},
            "preprocess": {"crop_size": settings["crop_size"], "spacing_mm": settings["spacing_mm"],
                           "groups": settings["groups"]},
            "apply": {"study": str(Path(study_dir).resolve())}}


def run_apply(study_dir, manifest_path, labels_path, out_dir, *, cores=2, configfiles=(), snakemake_args=()):
    """Write the config under out_dir/apply, then run `snakemake apply_all` in the checkout; returns the
    snakemake exit status. configfiles: more config files given after the generated one (they may change
    any setting; a mismatch with the study is then refused by the workflow)."""
    out_dir = Path(out_dir).resolve()
    check_folders(study_dir, out_dir)
    if not (REPO / "Snakefile").is_file():
        raise FileNotFoundError(f"{REPO / 'Snakefile'}: osteoloc apply runs the workflow of a checkout, and "
                                "this installation has none")
    if labels_path is None:
        labels_path = out_dir / "apply" / "labels_unknown.csv"
        unknown_labels(manifest_path, labels_path)
    config_path = out_dir / "apply" / "config.yaml"
    write_text(yaml.safe_dump(apply_config(study_dir, manifest_path, labels_path, out_dir), sort_keys=False),
               config_path)
    command = [str(Path(sys.executable).parent / "snakemake"), TARGET, "--cores", str(cores),
               "--configfile", "config.yaml", str(config_path), *map(str, configfiles), *snakemake_args]
    return subprocess.run(command, cwd=REPO).returncode
