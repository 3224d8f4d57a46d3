"""`osteoloc apply` on CI's finished study (the shared `ci_study` build, copied): applied to the study's own
test subjects it gives the probabilities and AUCs of the study's own evaluation, writes a gallery entry per
hip and target, and leaves the study's results as they were; a crop-size mismatch is refused, naming both
values, before any job runs."""

import hashlib
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workflow_copy import copy_study, run_env, snakemake, write_override

from osteoloc.names import TARGETS

# One xdist worker runs them all: `applied` is session-wide, but a session is per worker, so tests spread over
# two workers would run the apply twice.
pytestmark = pytest.mark.xdist_group("apply")

FLOAT_TOLERANCE = 1e-6  # probabilities are written by the same code from the same crops: equal to float32 print


def _fingerprint(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _test_cohort(results, dest):
    """Manifest and labels of the study's seed-0 test subjects (absolute paths), from the study's cohort files."""
    dest.mkdir(parents=True)
    split = pd.read_csv(results / "splits" / "seed0.csv")
    test = set(split.loc[split["split"] == "test", "subject"])
    manifest = pd.read_csv(results / "cohort" / "manifest.csv", keep_default_na=False)
    manifest = manifest[manifest["subject"].isin(test)].copy()
    for column in ("image_path", "points_path", "manual_points_path"):
        manifest[column] = [str((results / "cohort" / v).resolve()) if v else "" for v in manifest[column]]
    manifest.to_csv(dest / "manifest.csv", index=False)
    labels = pd.read_csv(results / "cohort" / "labels.csv", keep_default_na=False)
    labels[labels["subject"].isin(test)].to_csv(dest / "labels.csv", index=False)
    return dest / "manifest.csv", dest / "labels.csv"


class _Entries(HTMLParser):
    def __init__(self):
        super().__init__()
        self.entries = []

    def handle_starttag(self, tag, attrs):
        if tag == "figure" and dict(attrs).get("class") == "entry":
            self.entries.append(dict(attrs))


# session-wide: the conftest runs the first ci_study test before the unit tests, so a module fixture would
# be built twice (once for that test, again for the rest of this module)
@pytest.fixture(scope="session")
def applied(ci_study, tmp_path_factory):
    """A copy of the CI study (results only as the study; its checkout runs the apply) after `osteoloc apply`
    on its own test subjects: (workdir, out folder, fingerprint of the study's results before)."""
    work = copy_study(ci_study, tmp_path_factory.mktemp("apply") / "study")
    results = work / "results"
    before = _fingerprint(results)
    manifest, labels = _test_cohort(results, work.parent / "cohort")
    out = work.parent / "applied"
    proc = subprocess.run([sys.executable, "-m", "osteoloc.cli", "apply", "--study", str(results), "--manifest",
                           str(manifest), "--labels", str(labels), "--out", str(out), "--cores", "2"],
                          env=run_env(work), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"osteoloc apply failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    assert proc.stdout.strip().endswith(f"gallery: {out / 'apply' / 'gallery' / 'index.html'}")
    return work, out, before


def test_apply_to_the_studys_test_subjects_gives_its_probabilities(applied):
    work, out, _ = applied
    probabilities = pd.read_csv(out / "apply" / "probabilities.csv", dtype={"visit": str})
    for model in ("baseline", "prior"):
        own = pd.read_csv(work / "results" / "explain" / model / "seed0" / "predictions.csv", dtype={"visit": str})
        ours = probabilities[(probabilities["model"] == model) & (probabilities["seed"] == 0)]
        merged = own.merge(ours, on=["subject", "visit", "side", "target"], suffixes=("_study", "_apply"),
                           validate="one_to_one")
        assert len(merged) == len(own) == len(ours)
        np.testing.assert_allclose(merged["prob_apply"], merged["prob_study"], rtol=0, atol=FLOAT_TOLERANCE)
        assert (merged["label_apply"] == merged["label_study"]).all()


def test_apply_gives_the_studys_aucs(applied):
    work, out, _ = applied
    study = pd.read_csv(work / "results" / "report" / "tables" / "auc.csv", dtype={"seed": str})
    study = study[study["seed"] == "0"].set_index("target")
    ours = pd.read_csv(out / "apply" / "tables" / "auc_external.csv", dtype={"seed": str})
    assert (ours["evaluation"] == "external").all()
    compared = 0
    for model in ("baseline", "prior"):
        mine = ours[(ours["model"] == model) & (ours["seed"] == "0")].set_index("target")
        for target in TARGETS:
            if np.isfinite(study.loc[target, f"auc_{model}"]):  # the study's table needs 2 of each class
                assert mine.loc[target, "auc"] == pytest.approx(study.loc[target, f"auc_{model}"], abs=1e-9)
                assert mine.loc[target, "ci_low"] <= mine.loc[target, "auc"] <= mine.loc[target, "ci_high"]
                compared += 1
    assert compared > 0, "the CI study's AUC table defines no AUC to compare with"


def test_apply_writes_one_gallery_entry_per_hip_and_target(applied):
    _, out, _ = applied
    page = out / "apply" / "gallery" / "index.html"
    parser = _Entries()
    parser.feed(page.read_text())
    n_hips = pd.read_csv(out / "apply" / "ensemble.csv")["row"].nunique()
    assert n_hips > 0 and len(parser.entries) == n_hips * len(TARGETS)
    for name in ("thumbs", "full"):
        assert len(list((out / "apply" / "gallery" / name).glob("*.png"))) == n_hips * len(TARGETS)


def test_apply_never_writes_into_the_study(applied):
    work, _, before = applied
    assert _fingerprint(work / "results") == before


def test_a_crop_size_mismatch_is_refused_naming_both_values(applied, tmp_path):
    work, out, _ = applied
    override = write_override(tmp_path, {"preprocess": {"crop_size": 96}})
    proc = snakemake(work, "-n", "apply_all", "--configfile", "config.yaml", out / "apply" / "config.yaml",
                     override, check=False)
    assert proc.returncode != 0
    assert "preprocess.crop_size: the study's is 64, the new cohort's 96" in proc.stdout + proc.stderr
