"""The check before the long run fails where the run would and says why, on the phantom's files: a foreseen
excluded share over the limit, one file under two ids, a pixel description no decoder takes, a private
transfer syntax, ids that lost their leading zeros, side codes; and every exclusion the preprocessing makes
of a radiograph's hips is foreseen by the check, row for row."""

import shutil

import pandas as pd
import pydicom
import pytest
from pydicom.encaps import encapsulate

from helpers import copy_phantom

from osteoloc.cohort.landmarks import DEFAULT_GROUPS
from osteoloc.io.labels import hip_key
from osteoloc.names import SIDES
from osteoloc.io.errors import InputCheckFailed
from osteoloc.preprocess.stages import check_inputs
from osteoloc.preprocess.sources import NOTE_STAGES
from osteoloc.preprocess.stages import preprocess_study

# 10 radiographs, each broken kind of the phantom at least once (truncated DICOM, missing .pts, points outside
# the image, a junk grade), explicit and RLE files
PHANTOM = {"subjects": 10, "seed": 3, "broken_fraction": 0.05, "spacing_mm": [1.0, 1.0],
           "dicom": {"transfer_syntax": {"explicit": 1, "rle": 1, "jpeg2000": 0}}}
SETTINGS = {"points_unit": "auto", "accept_mirrored": False, "max_excluded_fraction": 0.9}
PRIVATE_SYNTAX = "1.2.826.0.1.3680043.8.498.10101"


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort(PHANTOM)  # tests/conftest.py: one per config and session


@pytest.fixture
def cohort(phantom, tmp_path):
    """A copy of the phantom's manifest, labels, images and points, to break."""
    folder = copy_phantom(phantom, tmp_path / "cohort")
    return {"manifest": folder / "manifest.csv", "labels": folder / "labels.csv"}


def run(cohort, tmp_path, **settings):
    return check_inputs("manifest", cohort, SETTINGS | settings, tmp_path / "input_check.csv")


def manifest_of(cohort):
    return pd.read_csv(cohort["manifest"], dtype=str, keep_default_na=False)


def labels_of(cohort):
    return pd.read_csv(cohort["labels"], dtype=str, keep_default_na=False)


def clean(cohort, rows=None):
    """Only the phantom's radiographs without a broken input (and their labels), the first `rows` of them."""
    folder = cohort["manifest"].parent
    broken = set(pd.read_csv(folder / "broken.csv", dtype=str)["subject"])
    manifest = manifest_of(cohort)
    manifest = manifest[~manifest["subject"].isin(broken)].iloc[:rows]
    manifest.to_csv(cohort["manifest"], index=False)
    labels = labels_of(cohort)
    labels[labels["subject"].isin(set(manifest["subject"]))].to_csv(cohort["labels"], index=False)
    return manifest


def add_radiograph(cohort, image_path, subject, like=0):
    """A manifest row for `image_path` under a new subject id, with the label rows of row `like`'s subject."""
    manifest, labels = manifest_of(cohort), labels_of(cohort)
    row = manifest.iloc[[like]].assign(image_path=image_path, subject=subject)
    pd.concat([manifest, row]).to_csv(cohort["manifest"], index=False)
    rows = labels[labels["subject"] == manifest["subject"].iloc[like]].assign(subject=subject)
    pd.concat([labels, rows]).to_csv(cohort["labels"], index=False)


def is_native(path):
    return not pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed


def edit_dicom(path, **elements):
    ds = pydicom.dcmread(path)
    for name, value in elements.items():
        setattr(ds.file_meta if name == "TransferSyntaxUID" else ds, name, value)
    ds.save_as(path)


def test_a_foreseen_share_over_the_limit_fails_before_any_shard(cohort, tmp_path):
    manifest = clean(cohort, rows=4)
    folder = cohort["manifest"].parent
    for points in manifest["points_path"].iloc[:2]:  # 4 of 8 hips: no points
        for path in folder.glob(points + "*"):
            path.unlink()
    with pytest.raises(InputCheckFailed, match=r"4 of 8 hips \(50.0%\) would be excluded, more than "
                                               r"preprocess.max_excluded_fraction = 40.0%.*points: 2 unit\(s\), e.g. "
                                               r"'right hip: no .pts file"):
        run(cohort, tmp_path, max_excluded_fraction=0.4)
    assert not (tmp_path / "input_check.csv").exists()
    assert run(cohort, tmp_path, max_excluded_fraction=0.5)["hips_lost"].sum() == 4


def test_one_file_under_two_ids_is_flagged_like_the_gather_drops_it(cohort, tmp_path):
    manifest = clean(cohort, rows=3)
    folder = cohort["manifest"].parent
    add_radiograph(cohort, manifest["image_path"].iloc[0], "CHECK-77777", like=0)  # the same path
    shutil.copy(folder / manifest["image_path"].iloc[1], folder / "images" / "copy.dcm")
    add_radiograph(cohort, "images/copy.dcm", "CHECK-88888", like=1)  # a copy: the same SOPInstanceUID
    table = run(cohort, tmp_path).set_index("subject")
    line = 2  # the first radiograph's manifest line
    assert table.loc["CHECK-77777", "problems"] == (
        f"the same file as line {line} (subject {manifest['subject'].iloc[0]}, visit {manifest['visit'].iloc[0]}), "
        "which is kept")
    assert table.loc["CHECK-88888", "problems"].startswith("the same image (SOPInstanceUID) as line 3")
    assert list(table["hips_lost"]) == [0, 0, 0, 2, 2]


def test_a_pixel_description_no_decoder_takes_is_a_problem(cohort, tmp_path):
    manifest = clean(cohort, rows=3)
    folder = cohort["manifest"].parent
    explicit = next(p for p in manifest["image_path"] if is_native(folder / p))
    edit_dicom(folder / explicit, BitsStored=20, HighBit=19)
    table = run(cohort, tmp_path).set_index("image_path")
    row = table.loc[str(folder / explicit)]
    assert row["hips_lost"] == 2
    assert "BitsStored 20 is not within 1 to BitsAllocated 16: the pixel data cannot be decoded" in row["problems"]


def test_a_private_transfer_syntax_fails_naming_its_uid(cohort, tmp_path):
    manifest = clean(cohort, rows=3)
    path = cohort["manifest"].parent / manifest["image_path"].iloc[0]
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = PRIVATE_SYNTAX
    ds.PixelData = encapsulate([b"\0" * 64])
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputCheckFailed, match=r"1 of 3 radiographs are in a transfer syntax no installed decoder "
                                               r"handles: decoder: 1 unit\(s\), e.g. 'transfer syntax "
                                               + PRIVATE_SYNTAX.replace(".", r"\.") + r" \(not a transfer syntax"):
        run(cohort, tmp_path)


def numeric_ids(cohort, manifest_width, labels_width):
    """Every subject id made all digits: `manifest_width` digits in the manifest, `labels_width` (zero-padded;
    0 = as a spreadsheet typed as a number) in the label table."""
    manifest, labels = manifest_of(cohort), labels_of(cohort)
    numbers = {s: 1000 + i for i, s in enumerate(manifest["subject"])}
    manifest.assign(subject=manifest["subject"].map(lambda s: f"{numbers[s]:0{manifest_width}d}")).to_csv(
        cohort["manifest"], index=False)
    labels.assign(subject=labels["subject"].map(lambda s: f"{numbers[s]:0{labels_width}d}")).to_csv(
        cohort["labels"], index=False)


def test_ids_that_lost_their_leading_zeros_fail_naming_pairs_and_the_setting(cohort, tmp_path):
    clean(cohort, rows=3)
    numeric_ids(cohort, 6, 0)
    with pytest.raises(InputCheckFailed, match=r"3 subject id\(s\) match a label row only when leading zeros and "
                                               r"punctuation are ignored, e.g. manifest '001000' ~ labels '1000', .*"
                                               r"set cohort.subject_digits: 6"):
        run(cohort, tmp_path)
    table = run(cohort, tmp_path, labels={"subject_digits": 6})
    assert (table["status"] == "ok").all()


def test_ids_from_a_float_column_match(cohort, tmp_path):
    clean(cohort, rows=3)
    numeric_ids(cohort, 0, 0)
    labels = labels_of(cohort)
    labels.assign(subject=labels["subject"] + ".0", visit="0.0").to_csv(cohort["labels"], index=False)
    assert (run(cohort, tmp_path)["status"] == "ok").all()


def test_side_codes_refused_say_why_with_counts(cohort, tmp_path):
    clean(cohort, rows=3)
    labels = labels_of(cohort)
    codes = labels["side"].str[0].str.lower().map({"r": "1", "l": "2"})
    labels.assign(side=codes).to_csv(cohort["labels"], index=False)
    with pytest.raises(InputCheckFailed, match=r"not one of the 6 hips could be used: labels: 3 unit\(s\), e.g. .right "
                                               r"hip: no label row for this hip; the label table refused 2 row\(s\) "
                                               r"of this subject and visit, e.g. label row: unknown side '1'.*"
                                               r"label table: 6 row\(s\) refused: "
                                               r"label row: unknown side '1' \(set cohort.side_codes to name your "
                                               r"codes, e.g. \{1: right, 2: left\}\) \(x3\)"):
        run(cohort, tmp_path)
    table = run(cohort, tmp_path, labels={"side_codes": {1: "right", 2: "left"}})
    assert (table["status"] == "ok").all()


def lost_hips(frame, manifest):
    """{(subject, visit) of a manifest row: sorted sides lost} of an exclusions table (notes left out; a
    radiograph-level row loses both hips) for the manifest's radiographs."""
    rows = {hip_key(r.subject, r.visit, "right")[:2]: (r.subject, r.visit) for r in manifest.itertuples()}
    lost = {}
    for row in frame.itertuples():
        key = hip_key(row.subject, row.visit, "right")[:2]
        if row.stage in NOTE_STAGES or row.stage == "identity" or key not in rows or row.side not in ("", *SIDES):
            continue  # a note, a label row of no radiograph, or a label row whose side is no side
        lost.setdefault(rows[key], set()).update(SIDES if row.side == "" else [row.side])
    return {key: sorted(sides) for key, sides in lost.items()}


def test_every_exclusion_of_the_run_is_foreseen_by_the_check_row_for_row(cohort, tmp_path):
    folder = cohort["manifest"].parent
    manifest = manifest_of(cohort)
    broken = pd.read_csv(folder / "broken.csv", dtype=str)
    assert set(broken["kind"]) == {"truncated_dicom", "missing_pts", "points_outside", "junk_grade"}
    good = manifest[~manifest["subject"].isin(set(broken["subject"]))]
    add_radiograph(cohort, good["image_path"].iloc[0], "CHECK-77777", like=good.index[0])  # one file, two ids
    explicit = next(p for p in good["image_path"].iloc[1:] if is_native(folder / p))
    edit_dicom(folder / explicit, BitsStored=20, HighBit=19)  # no decoder takes it
    labels = labels_of(cohort)
    third, fourth = good["subject"].iloc[2], good["subject"].iloc[3]
    labels.loc[labels["subject"] == third, "osteo_fem_sup"] = "."  # unknown grades: the hips stay
    labels.loc[(labels["subject"] == fourth) & labels["side"].str.lower().str.startswith("l"), "side"] = "2"
    labels[labels["subject"] != good["subject"].iloc[4]].to_csv(cohort["labels"], index=False)  # no label rows
    manifest = manifest_of(cohort)

    table = run(cohort, tmp_path)
    foreseen = {(r.subject, r.visit): sorted(SIDES if r.hips_lost == 2 else
                                             [s for s in SIDES if f"{s} hip:" in r.problems])
                for r in table.itertuples() if r.hips_lost}
    exclusions = tmp_path / "exclusions.csv"
    preprocess_study(cohort["manifest"], cohort["labels"], tmp_path / "study.h5", exclusions, crop_size=64,
                     spacing_mm=1.0, groups=DEFAULT_GROUPS, max_excluded_fraction=0.9)
    made = lost_hips(pd.read_csv(exclusions, dtype=str, keep_default_na=False), manifest)
    assert made == foreseen
    # every defect injected and every broken phantom input is among them
    assert {("CHECK-77777", good["visit"].iloc[0]), (third, good["visit"].iloc[2])} & set(made) == {
        ("CHECK-77777", good["visit"].iloc[0])}
    assert made[(fourth, good["visit"].iloc[3])] == ["left"]
    assert made[(good["subject"].iloc[4], good["visit"].iloc[4])] == ["left", "right"]
    assert len(made) >= 4 + 4
