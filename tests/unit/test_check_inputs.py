"""The check before the long run: one row per radiograph (ok or what excludes which hip), labels without a
radiograph listed, and a clear failure, with no table, on what would fail every preprocessing job."""

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML

from helpers import make_cohort, write_dicom, write_labels
from osteoloc.cohort.landmarks import DEFAULT_GROUPS
from osteoloc.io import dicom_header
from osteoloc.io.group_h5 import export_group_h5
from helpers import load_study
from osteoloc.io.dicom_header import read_header
from osteoloc.io.errors import InputCheckFailed
from osteoloc.preprocess.stages import check_inputs, preprocess_study
from osteoloc.names import TARGETS

SETTINGS = {"points_unit": "auto", "accept_mirrored": False}


@pytest.fixture
def cohort(tmp_path):
    manifest, labels = make_cohort(tmp_path / "cohort", 5, shape=(300, 440), compress_every=2)
    return {"manifest": manifest, "labels": labels}


def run(cohort, tmp_path, **settings):
    return check_inputs("manifest", cohort, SETTINGS | settings, tmp_path / "input_check.csv")


def test_a_clean_cohort_is_all_ok(cohort, tmp_path):
    table = run(cohort, tmp_path)
    written = pd.read_csv(tmp_path / "input_check.csv", keep_default_na=False)
    assert list(written["status"]) == ["ok"] * 5 and list(written["hips_lost"]) == [0] * 5
    assert list(table["subject"]) == [f"CHECK-{i:05d}" for i in range(5)]


def test_every_problem_is_named_on_its_radiograph(cohort, tmp_path):
    folder = cohort["manifest"].parent
    (folder / "00001_T00_APO.pts").unlink()
    plain = folder / "00003_T00_APO.dcm"  # uncompressed (every second image is RLE)
    plain.write_bytes(plain.read_bytes()[:-1000])
    rle = folder / "00004_T00_APO.dcm"
    rle.write_bytes(rle.read_bytes()[:-500])
    labels = pd.read_csv(cohort["labels"], dtype=str)
    labels = labels[~((labels["subject"] == "CHECK-00002") & (labels["side"] == "left"))]
    extra = labels.iloc[:2].assign(subject="CHECK-99999")
    pd.concat([labels, extra]).to_csv(cohort["labels"], index=False)
    manifest = pd.read_csv(cohort["manifest"])
    pd.concat([manifest, manifest.iloc[[0]]]).to_csv(cohort["manifest"], index=False)
    table = run(cohort, tmp_path).set_index(["subject", "status"])
    problems = table["problems"].to_dict()
    lost = table["hips_lost"].to_dict()
    assert "no .pts file for the right hip" in problems[("CHECK-00001", "problem")] and lost[("CHECK-00001", "problem")] == 2
    assert problems[("CHECK-00002", "problem")] == "left hip: no label row for this hip"
    assert lost[("CHECK-00002", "problem")] == 1
    assert "truncated: the file holds" in problems[("CHECK-00003", "problem")]
    assert "truncated: the encapsulated pixel data" in problems[("CHECK-00004", "problem")]
    assert "right and left hip(s) but no radiograph" in problems[("CHECK-99999", "labels only")]
    assert lost[("CHECK-99999", "labels only")] == 0
    assert "duplicate manifest row" in table.loc[("CHECK-00000", "problem"), "problems"]
    assert table.loc[("CHECK-00000", "ok"), "hips_lost"] == 0


def test_a_transfer_syntax_nobody_decodes_fails_before_the_run(cohort, tmp_path):
    for path in sorted(cohort["manifest"].parent.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.PixelData = encapsulate([b"\0" * 64])
        ds.save_as(path)
    with pytest.raises(InputCheckFailed, match=r"5 of 5 radiographs .*no installed decoder handles.*1\.2\.840\.10008\.1\.2\.4\.100 \(MPEG2 Main"):
        run(cohort, tmp_path)
    assert not (tmp_path / "input_check.csv").exists()


def test_a_missing_decoder_is_named_with_what_would_install_one(cohort, tmp_path, monkeypatch):
    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg-rle - requires pylibjpeg"]

    real = dicom_header.get_decoder
    monkeypatch.setattr(dicom_header, "get_decoder",
                        lambda uid: Unavailable() if uid.name == "RLE Lossless" else real(uid))
    dicom_header.decoder_problem.cache_clear()
    try:
        with pytest.raises(InputCheckFailed, match="3 of 5 radiographs.*RLE Lossless.*pylibjpeg-rle"):
            run(cohort, tmp_path)  # every second radiograph is RLE
    finally:
        dicom_header.decoder_problem.cache_clear()


def test_a_missing_label_column_fails_naming_it(cohort, tmp_path):
    labels = pd.read_csv(cohort["labels"]).rename(columns={"osteo_fem_inf": "OST_FI"})
    labels.to_csv(cohort["labels"], index=False)
    with pytest.raises(ValueError, match=r"labels.csv: label CSV lacks column.*'osteo_fem_inf'"):
        run(cohort, tmp_path)
    table = run(cohort, tmp_path, labels={"label_columns": {"osteo_fem_inf": "ost_fi"}})
    assert (table["status"] == "ok").all()
    with pytest.raises(ValueError, match=r"'OST_FEM_INF' \(osteoloc's osteo_fem_inf\)"):
        run(cohort, tmp_path, labels={"label_columns": {"osteo_fem_inf": "OST_FEM_INF"}})


def test_header_pass_reads_no_pixels_and_judges_like_the_reader(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((20, 30), np.uint16), spacing=None, photometric="RGB")
    header = read_header(path)
    assert header.shape == (20, 30) and header.spacing is None
    assert any("greyscale MONOCHROME1/2 expected" in p for p in header.problems)
    assert any("no PixelSpacing" in p for p in header.problems)
    assert read_header(path, spacing=0.5).spacing == (0.5, 0.5)
    with pytest.raises(ValueError, match="b.dcm: not a readable DICOM"):
        (tmp_path / "b.dcm").write_bytes(b"nonsense")
        read_header(tmp_path / "b.dcm")


def test_data_problems_are_listed_not_fatal_unless_no_hip_is_left(cohort, tmp_path):
    for path in sorted(cohort["manifest"].parent.glob("*.pts"))[:4]:
        path.unlink()  # 8 of 10 hips lost: the gather will judge the share, with its exclusions table
    table = run(cohort, tmp_path)
    assert table["hips_lost"].sum() == 8 and (tmp_path / "input_check.csv").exists()
    labels = pd.read_csv(cohort["labels"])
    labels.assign(subject=labels["subject"].str.replace("CHECK-", "CHK")).to_csv(cohort["labels"], index=False)
    with pytest.raises(InputCheckFailed, match="not one of the 10 hips could be used.*no label row for this hip"):
        run(cohort, tmp_path)


def test_empty_cohort_fails(tmp_path):
    (tmp_path / "manifest.csv").write_text("image_path,subject,visit,cohort,points_path\n")
    labels = write_labels(tmp_path / "labels.csv", [("CHECK", "A", "T00", "right", *[0] * len(TARGETS))])
    with pytest.raises(InputCheckFailed, match="no radiographs"):
        check_inputs("manifest", {"manifest": tmp_path / "manifest.csv", "labels": labels}, SETTINGS,
                     tmp_path / "input_check.csv")


def test_group_hdf5_hips_checked_against_points_and_labels(cohort, tmp_path):
    study = tmp_path / "study.h5"
    preprocess_study(cohort["manifest"], cohort["labels"], study, tmp_path / "excl.csv", crop_size=64,
                     spacing_mm=1.0, groups=DEFAULT_GROUPS, max_excluded_fraction=0.5)
    export_group_h5(load_study(study), tmp_path / "group.h5")
    folder = cohort["manifest"].parent
    (folder / "00001_T00_APO.pts").unlink()
    inputs = {"group_hdf5": tmp_path / "group.h5", "points_dir": folder, "labels": cohort["labels"]}
    table = check_inputs("group_hdf5", inputs, SETTINGS, tmp_path / "input_check.csv")
    assert len(table) == 10 and set(table["side"]) == {"right", "left"}
    bad = table[table["status"] == "problem"]
    assert list(bad["subject"]) == ["CHECK-00001"] * 2 and list(bad["hips_lost"]) == [1, 1]
    assert bad["problems"].str.contains("no .pts file").all()
