"""In-memory split loading and whole-batch rotation (landmarks follow the pixels)."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import write_study
from osteoloc.train.data import batch_order, load_split, read_subjects, rotate_batch, rotation_matrices
from osteoloc.io.study_h5 import StudyFile, StudyFormatError, read_spans
from helpers import write_study_arrays
from osteoloc.names import TARGETS


def test_load_split_reads_only_its_subjects_and_masks_padding(tmp_path):
    h5 = write_study(tmp_path / "study.h5", n_subjects=5)
    subjects = sorted(set(read_subjects(h5)))
    split = pd.DataFrame({"subject": subjects, "split": ["train", "val", "train", "test", "train"]})
    data = load_split(h5, split, "train")
    assert data.images.shape == (6, 1, 32, 32) and data.images.dtype == torch.float32
    assert data.rows.tolist() == [0, 1, 4, 5, 8, 9]
    with StudyFile(h5) as f:
        stored = f.read(["image", "labels"], [0, 1, 4, 5, 8, 9])
    np.testing.assert_array_equal(data.images[:, 0].numpy(), stored.image)
    np.testing.assert_array_equal(data.labels.numpy(), stored.labels)
    assert not data.valid[:, 2:, 1:].any() and torch.isfinite(data.landmarks).all()
    with pytest.raises(ValueError, match="holds no image"):
        load_split(h5, split.assign(split="train"), "val")


def test_study_file_refuses_a_wrong_schema_version_and_a_missing_dataset(tmp_path):
    for problem, expected in [("version", "schema_version 99"), ("dataset", "no /landmarks/valid dataset"),
                              ("shape", "/labels has shape")]:
        path = write_study(tmp_path / f"{problem}.h5", n_subjects=2)
        with h5py.File(path, "a") as f:  # break one thing of a good file
            if problem == "version":
                f.attrs["schema_version"] = 99
            elif problem == "dataset":
                del f["landmarks/valid"]
            else:
                del f["labels"]
                f["labels"] = np.zeros((4, 3), np.int8)
        with pytest.raises(StudyFormatError, match=rf"{problem}\.h5: {expected}"):
            StudyFile(path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(StudyFormatError, match="text.h5: cannot open as HDF5"):
        StudyFile(tmp_path / "text.h5")


def test_study_file_reads_rows_in_any_order_as_fancy_indexing_would(tmp_path):
    h5 = write_study(tmp_path / "study.h5", n_subjects=12)
    rows = [17, 3, 4, 5, 3, 23, 0]
    with StudyFile(h5) as study, h5py.File(h5) as raw:
        assert len(study) == 24 and study.crop_size == 32 and study.targets == list(TARGETS)
        assert study.layers == () and study.group_indices["osteo_acet_sup"] == [20]
        got = study.read(["image", "groups", "side"], rows)
        assert got.rows.tolist() == rows and got.labels is None and got.layers == {}
        np.testing.assert_array_equal(got.image, raw["images"][()][rows])
        np.testing.assert_array_equal(got.groups, raw["landmarks/groups"][()][rows])
        assert got.side.tolist() == ["left", "left", "right", "left", "left", "left", "right"]
        meta = study.meta(("subject", "side"), rows=[2, 3])
        assert meta.to_dict("list") == {"row": [2, 3], "subject": ["S001", "S001"], "side": ["right", "left"]}
        batches = list(study.batches(["labels"], np.arange(5, 12), 3))
        assert [b.rows.tolist() for b in batches] == [[5, 6, 7], [8, 9, 10], [11]]
        np.testing.assert_array_equal(batches[1].labels, raw["labels"][8:11])
        with pytest.raises(KeyError, match="no study field 'images'"):
            study.read(["images"])
        with pytest.raises(KeyError, match="no 'lesions' layer"):
            study.read(["lesions"])
        with pytest.raises(IndexError, match="study.h5: row"):
            study.read(["labels"], [24])


def test_read_spans_cover_each_row_once_with_bounded_slices():
    rows = np.array([0, 1, 2, 50, 300, 301, 2000, 2001, 2100, 5000])
    spans = read_spans(rows, max_gap=64, max_len=1024)
    covered = np.concatenate([start + positions for start, _, positions in spans])
    np.testing.assert_array_equal(covered, rows)
    assert [(a, b) for a, b, _ in spans] == [(0, 51), (300, 302), (2000, 2002), (2100, 2101),
                                          (5000, 5001)]
    long = read_spans(np.arange(3000), max_gap=64, max_len=1024)
    assert [(a, b) for a, b, _ in long] == [(0, 1024), (1024, 2048), (2048, 3000)]


def test_batch_order_covers_every_index_once_and_is_seeded():
    a = torch.cat(batch_order(10, 3, torch.Generator().manual_seed(1)))
    b = torch.cat(batch_order(10, 3, torch.Generator().manual_seed(1)))
    assert sorted(a.tolist()) == list(range(10)) and torch.equal(a, b)
    assert torch.cat(batch_order(5, 2)).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("degrees", [90.0, 37.0, -23.0])
def test_bright_dot_stays_under_rotated_landmark(degrees):
    size = 33
    images = torch.zeros(2, 1, size, size)
    landmarks = torch.tensor([[[[8.0, 5.0]]], [[[20.0, 11.0]]]])  # (B, 1, 1, 2) as (x, y)
    for b, (x, y) in enumerate(landmarks[:, 0, 0].long().tolist()):
        images[b, 0, y, x] = 1.0
    angle = torch.tensor(np.radians(degrees))
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
    rotations = rotation.expand(2, 2, 2).clone()
    rotated, moved, valid = rotate_batch(images, landmarks, torch.ones(2, 1, 1, dtype=torch.bool), rotations)
    assert valid.all()
    for b in range(2):
        peak = torch.nonzero(rotated[b, 0] == rotated[b, 0].max())[0]  # (row, col)
        x, y = moved[b, 0, 0].tolist()
        # the brightest pixel is the one nearest the transformed landmark
        assert abs(peak[1].item() - x) <= 0.5 + 1e-4 and abs(peak[0].item() - y) <= 0.5 + 1e-4
        assert rotated[b, 0, round(y), round(x)] > 0.3


def test_random_rotations_move_landmarks_like_pixels():
    """Random angles: a dot's intensity-weighted centre follows its landmark, in a whole batch."""
    size, b = 41, 6
    g = torch.Generator().manual_seed(0)
    points = 12 + torch.rand(b, 1, 1, 2, generator=g) * 16
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.exp(-((xx - points[:, 0, 0, 0, None, None]) ** 2 + (yy - points[:, 0, 0, 1, None, None]) ** 2)
                       / 4.0)[:, None]
    rotated, moved, _ = rotate_batch(images, points, torch.ones(b, 1, 1, dtype=torch.bool),
                                     rotation_matrices(b, 180, g))
    weights = rotated[:, 0]
    centre_x = (weights * xx).sum((1, 2)) / weights.sum((1, 2))
    centre_y = (weights * yy).sum((1, 2)) / weights.sum((1, 2))
    torch.testing.assert_close(centre_x, moved[:, 0, 0, 0], atol=0.05, rtol=0)
    torch.testing.assert_close(centre_y, moved[:, 0, 0, 1], atol=0.05, rtol=0)


def test_points_rotated_out_of_the_image_become_invalid():
    landmarks = torch.tensor([[[[0.0, 0.0], [16.0, 16.0]]]])
    angle = np.radians(45)
    rotation = torch.tensor([[[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]], dtype=torch.float32)
    _, moved, valid = rotate_batch(torch.zeros(1, 1, 33, 33), landmarks, torch.ones(1, 1, 2, dtype=torch.bool),
                                   rotation)
    assert valid.tolist() == [[[False, True]]]
    torch.testing.assert_close(moved[0, 0, 1], torch.tensor([16.0, 16.0]))
