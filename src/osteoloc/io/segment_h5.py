"""Paper B's per-site HDF5 files (docs/contracts.md section 7): `patches.h5` (a site's train / val / test
patch sets) and `predictions.h5` (the U-Net's test-patch probabilities). Their one reader and writer.

Both are written to a path the caller makes atomic (`osteoloc.io.atomic.atomic_path`).
"""

import json
from dataclasses import dataclass, field

import h5py
import numpy as np

PATCH_SPLITS = ("train", "val", "test")


@dataclass
class PatchSet:
    """One split's patches of one site; patch pixels (P, P), rows are study HDF5 rows."""

    images: np.ndarray  # (n, P, P) float32, normalised per patch
    masks: np.ndarray  # (n, P, P) uint8 lesion mask of the site's target
    rows: np.ndarray  # (n,) HDF5 row
    labels: np.ndarray  # (n,) image-level label 0/1
    copy: np.ndarray  # (n,) 0 = the original patch, k > 0 = k-th augmented copy
    landmarks: np.ndarray  # (n,) "manual" / "automatic": which points centred the patch
    counts: dict = field(default_factory=dict)


def _chunks(n):
    return True if n else None  # h5py refuses chunking an empty dataset


def write_patch_sets(sets, site_name, target, path):
    """Write {split: PatchSet} of one site to `path`: one group per split, attributes site, target."""
    with h5py.File(path, "w") as h5:
        h5.attrs["site"] = site_name
        h5.attrs["target"] = target
        for split, ps in sets.items():
            g = h5.create_group(split)
            g.create_dataset("images", data=ps.images, compression="gzip", chunks=_chunks(len(ps.rows)))
            g.create_dataset("masks", data=ps.masks, compression="gzip", chunks=_chunks(len(ps.rows)))
            g.create_dataset("rows", data=ps.rows.astype(np.int64))
            g.create_dataset("labels", data=ps.labels.astype(np.int8))
            g.create_dataset("copy", data=ps.copy.astype(np.int32))
            g.create_dataset("landmarks", data=np.array(ps.landmarks, dtype=object), dtype=h5py.string_dtype())
            g.attrs["counts"] = json.dumps(ps.counts)


def read_patch_set(path, split):
    """The PatchSet of `split` from a patches.h5; a clear error when the file lacks it."""
    with h5py.File(path, "r") as h5:
        if split not in h5:
            raise ValueError(f"{path}: no '{split}' patch set (has {sorted(h5)})")
        g = h5[split]
        return PatchSet(g["images"][:], g["masks"][:], g["rows"][:], g["labels"][:].astype(int), g["copy"][:],
                        g["landmarks"].asstr()[:].astype(str), json.loads(g.attrs["counts"]))


def write_predictions(test, prob, site_name, target, path):
    """A site's test patches with their foreground probability (float16) -> `path`."""
    with h5py.File(path, "w") as h5:
        h5.create_dataset("rows", data=test.rows.astype(np.int64))
        h5.create_dataset("labels", data=test.labels.astype(np.int8))
        for name, data in (("images", test.images), ("truth", test.masks), ("prob", prob.astype(np.float16))):
            h5.create_dataset(name, data=data, compression="gzip", chunks=_chunks(len(test.rows)))
        h5.attrs["site"], h5.attrs["target"] = site_name, target


def read_prediction_patches(path, indices):
    """[(image, truth, prob float32)] of the test patches `indices` of a predictions.h5."""
    with h5py.File(path, "r") as h5:
        return [(h5["images"][i], h5["truth"][i], h5["prob"][i].astype(np.float32)) for i in indices]
