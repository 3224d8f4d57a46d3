"""`osteoloc manifest` on folders as PACS exports and shared drives leave them, on the phantom's files: files
named by their UID without an extension pair with their `.pts`, symbolic links to folders are followed (a
loop ends) and broken links are listed, a DICOMDIR is listed as what it is."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.fileset import FileSet

from helpers import copy_phantom

from osteoloc.cohort.manifest_builder import build_manifest, unpaired_path

PHANTOM = {"subjects": 4, "seed": 0, "broken_fraction": 0, "split_pts_fraction": 0.5, "spacing_mm": [1.0, 1.0],
           "dicom": {"transfer_syntax": {"explicit": 1, "rle": 0, "jpeg2000": 0}}}
PATTERNS = [r"(?P<cohort>OAI)-(?P<subject>\d+)-(?P<visit>V\d\d)", r"(?P<subject>\d{5})_(?P<visit>T\d\d)_APO"]
NAMING = dict(id_patterns=PATTERNS, cohort="CHECK", subject_format="{cohort}-{subject}")
HEADER_IDS = dict(subject_from="PatientID", visit_from="StudyDate")


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort(PHANTOM)  # tests/conftest.py: one per config and session


@pytest.fixture
def folder(phantom, tmp_path):
    return copy_phantom(phantom, tmp_path, ("images", "points/auto"))


def unpaired_reasons(out):
    return {(Path(p).name, kind): reason for p, kind, reason in pd.read_csv(unpaired_path(out)).itertuples(index=False)}


def test_uid_named_files_without_extension_pair_with_their_pts(folder):
    images, points = folder / "images", folder / "points/auto"
    renamed = {}
    for path in sorted(images.glob("*.dcm")):
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        path.rename(images / uid)  # what a PACS export writes: 1.2.826.0.1.3680043.8.498.10101
        for pts in points.glob(path.stem + "*.pts"):
            pts.rename(points / (uid + pts.name[len(path.stem):]))  # <uid>.pts, or <uid>_L.pts / <uid>_R.pts
        renamed[uid] = path.name
    assert all(uid.count(".") >= 2 for uid in renamed)  # the last dotted part is no suffix
    out = folder / "manifest.csv"
    manifest, unpaired = build_manifest(images, points, out, **HEADER_IDS)
    assert unpaired.empty, unpaired.to_dict("records")
    assert sorted(Path(p).name for p in manifest["image_path"]) == sorted(renamed)
    for row in manifest.itertuples():
        assert Path(row.points_path).name.startswith(Path(row.image_path).name)
    # both namings: <uid>.pts (160 points) and the per-hip stem of <uid>_L.pts / <uid>_R.pts
    assert {Path(p).suffix for p in manifest["points_path"]} > {".pts"}


def test_symlinked_folders_are_followed_and_broken_links_listed(folder, tmp_path):
    images = folder / "images"
    elsewhere = tmp_path / "elsewhere" / "series"
    elsewhere.mkdir(parents=True)
    moved = sorted(images.glob("*.dcm"))[:2]
    for path in moved:
        path.rename(elsewhere / path.name)
    (images / "linked").symlink_to(elsewhere, target_is_directory=True)  # a sub-folder on another drive
    (elsewhere / "back").symlink_to(images, target_is_directory=True)  # a loop
    (images / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")  # a broken link
    out = folder / "manifest.csv"
    manifest, _ = build_manifest(images, folder / "points/auto", out, **NAMING)
    assert len(manifest) == PHANTOM["subjects"]
    assert {Path(p).name for p in manifest["image_path"]} >= {p.name for p in moved}
    reasons = unpaired_reasons(out)
    assert reasons[("gone.dcm", "link")].startswith("broken symbolic link (to ")
    assert "a folder already listed: not followed again" in reasons[("back", "link")]
    assert len(reasons) == 2


def test_a_dicomdir_is_listed_as_such(folder, tmp_path):
    images = folder / "images"
    fileset = FileSet()
    fileset.add(pydicom.dcmread(sorted(images.glob("*.dcm"))[0]))
    fileset.write(tmp_path / "media")
    shutil.copy(tmp_path / "media" / "DICOMDIR", images / "DICOMDIR")
    shutil.copy(tmp_path / "media" / "DICOMDIR", images / "index.dcm")  # renamed: known by its SOP class
    out = folder / "manifest.csv"
    manifest, _ = build_manifest(images, folder / "points/auto", out, **NAMING)
    assert len(manifest) == PHANTOM["subjects"]
    reasons = unpaired_reasons(out)
    assert set(reasons) == {("DICOMDIR", "dicomdir"), ("index.dcm", "dicomdir")}
    assert reasons[("DICOMDIR", "dicomdir")].startswith("a DICOMDIR: the index of a DICOM media folder")
    assert os.path.exists(images / "DICOMDIR")
