"""`osteoloc manifest`: a folder of phantom DICOMs and .pts (single and per-hip files) paired into the same
manifest the phantom wrote; what cannot be paired is listed with the reason; no identifier but the one
asked for is written."""

from pathlib import Path

import pandas as pd
import pydicom
import pytest

from helpers import copy_phantom

from osteoloc.cli import main
from osteoloc.cohort.manifest_builder import build_manifest, unpaired_path
from osteoloc.io.manifest import REQUIRED_COLUMNS, read_manifest

PHANTOM = {"subjects": 6, "seed": 1, "broken_fraction": 0, "split_pts_fraction": 0.5, "spacing_mm": [1.0, 1.0],
           "dicom": {"transfer_syntax": {"explicit": 1, "rle": 1, "jpeg2000": 0, "jpegls": 0, "jpeg_lossless": 0}}}
# The phantom's two naming schemes: OAI-9xxxxxx-V00-<date>.dcm and 0xxxx_T00_APO.dcm (subject CHECK-0xxxx)
PATTERNS = [r"(?P<cohort>OAI)-(?P<subject>\d+)-(?P<visit>V\d\d)", r"(?P<subject>\d{5})_(?P<visit>T\d\d)_APO"]
NAMING = dict(id_patterns=PATTERNS, cohort="CHECK", subject_format="{cohort}-{subject}")


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort(PHANTOM)  # tests/conftest.py: one per config and session


@pytest.fixture
def folder(phantom, tmp_path):
    """A copy of the phantom's images and automatic points, to break."""
    return copy_phantom(phantom, tmp_path, ("images", "points/auto"))


def by_image(frame):
    return frame.assign(image=frame["image_path"].map(lambda p: Path(p).name)).set_index("image").sort_index()


def test_pairs_the_phantoms_folders_into_its_own_manifest(folder, phantom):
    out = folder / "out" / "manifest.csv"
    manifest, unpaired = build_manifest(folder / "images", folder / "points/auto", out, **NAMING)
    assert unpaired.empty and pd.read_csv(unpaired_path(out)).empty
    assert list(pd.read_csv(out).columns) == list(REQUIRED_COLUMNS)
    ours, theirs = by_image(read_manifest(out)), by_image(pd.read_csv(phantom / "manifest.csv"))
    assert list(ours.index) == list(theirs.index) and len(ours) == PHANTOM["subjects"]
    for column in ("subject", "visit", "cohort"):
        assert list(ours[column]) == list(theirs[column])
    # single 160-point files and per-hip stems (<stem>_L.pts / _R.pts) alike, relative to the manifest's folder
    assert [Path(p).name for p in ours["points_path"]] == [Path(p).name for p in theirs["points_path"]]
    assert any(not p.endswith(".pts") for p in theirs["points_path"])  # the phantom has per-hip files
    assert all(Path(p).exists() for p in ours["image_path"])
    assert not str(pd.read_csv(out)["image_path"][0]).startswith("/")


def test_lists_what_it_cannot_pair(folder):
    points = folder / "points/auto"
    singles = sorted(p for p in points.glob("*.pts") if not p.stem.endswith(("_L", "_R")))
    singles[0].unlink()  # a radiograph without points
    right_of_left_hip = sorted(points.glob("*_R.pts"))[0]
    right_of_left_hip.unlink()  # a per-hip pair missing one file: paired, its left hip will be excluded
    (points / "stray_T00_APO.pts").write_text(singles[1].read_text())  # points of no radiograph
    (folder / "images" / "notes.txt").write_text("not an image")
    out = folder / "manifest.csv"
    manifest, unpaired = build_manifest(folder / "images", points, out, **NAMING)
    reasons = {(Path(p).name, kind): reason for p, kind, reason in pd.read_csv(unpaired_path(out)).itertuples(index=False)}
    assert "no .pts file" in reasons[(singles[0].stem + ".dcm", "dicom")]
    assert "no DICOM named like it" in reasons[("stray_T00_APO.pts", "pts")]
    assert "not a DICOM" in reasons[("notes.txt", "other")]
    one_hip = right_of_left_hip.name.removesuffix("_R.pts") + ".dcm"
    assert "left hip" in reasons[(one_hip, "one_hip")]
    assert len(reasons) == 4
    images = set(by_image(manifest).index)
    assert one_hip in images and singles[0].stem + ".dcm" not in images
    assert len(manifest) == PHANTOM["subjects"] - 1


def test_ids_from_the_header_and_nothing_else_written(folder):
    out = folder / "manifest.csv"
    manifest, _ = build_manifest(folder / "images", folder / "points/auto", out, subject_from="PatientID",
                                 visit_from="StudyDate", cohort="X")
    written = out.read_text() + unpaired_path(out).read_text()
    for row in manifest.itertuples():
        ds = pydicom.dcmread(out.parent / row.image_path, stop_before_pixels=True)
        assert (row.subject, str(row.visit)) == (ds.PatientID, ds.StudyDate)
        assert str(ds.PatientName) not in written and ds.PatientBirthDate not in written
        assert ds.AccessionNumber not in written


def test_bad_patterns_fail_before_anything_is_written(folder, capsys):
    out = folder / "manifest.csv"
    with pytest.raises(ValueError, match="no named group.*visit"):
        build_manifest(folder / "images", folder / "points/auto", out, id_patterns=[r"(?P<subject>\d+)"])
    assert main(["manifest", "--dicom-dir", str(folder / "images"), "--pts-dir", str(folder / "points/auto"),
                 "--id-pattern", "(unclosed", "--out", str(out)]) == 2
    assert "not a regular expression" in capsys.readouterr().err
    assert not out.exists()
    assert main(["manifest", "--dicom-dir", str(folder / "images"), "--pts-dir", str(folder / "points/auto"),
                 *[a for p in PATTERNS for a in ("--id-pattern", p)], "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == PHANTOM["subjects"]
