"""A site's train / val / test patch sets from the study HDF5 (contracts.md section 2) and the split CSV.

Train and validation: balanced, centred on the manual landmarks (`/landmarks/contour_manual`), augmented.
Test: every test-split hip with a known label, centred on the automatic landmarks (`/landmarks/contour`),
not augmented - so the test set is imbalanced, as in paper B.
"""

import json
import logging
from dataclasses import dataclass, field

import h5py
import numpy as np
import pandas as pd

from osteoloc.segment import patches as P
from osteoloc.segment.sampling import augmentation_draws, balanced_rows, site_rng

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass
class PatchSet:
    images: np.ndarray  # (n, P, P) float32, normalised per patch
    masks: np.ndarray  # (n, P, P) uint8 lesion mask of the site's target
    rows: np.ndarray  # (n,) HDF5 row
    labels: np.ndarray  # (n,) image-level label 0/1
    copy: np.ndarray  # (n,) 0 = the original patch, k > 0 = k-th augmented copy
    landmarks: np.ndarray  # (n,) "manual" / "automatic": which points centred the patch
    counts: dict = field(default_factory=dict)


def read_splits(path):
    """subject -> split from `seed{seed}.csv`; a clear error for a malformed file."""
    df = pd.read_csv(path, dtype={"subject": str})
    if not {"subject", "split"} <= set(df.columns):
        raise ValueError(f"{path}: needs columns subject, split (has {list(df.columns)})")
    bad = set(df["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"{path}: unknown split values {sorted(bad)}")
    return dict(zip(df["subject"], df["split"]))


def centre_indices(h5, site):
    """The BoneFinder indices a site centres on: configured, else the target's group (`group_indices`)."""
    if site.centre:
        return list(site.centre)
    raw = h5.attrs.get("group_indices")
    if raw is None:
        raise ValueError(f"{h5.filename}: no `group_indices` attribute; set segment.sites.{site.name}.centre")
    groups = json.loads(raw)
    if site.target not in groups:
        raise ValueError(f"{h5.filename}: group_indices has no {site.target}; set segment.sites.{site.name}.centre")
    return [int(i) for i in groups[site.target]]


def _geometry(contour, indices, cfg):
    centre = P.site_centre(contour, indices)
    ref = P.reference_length(contour, cfg["reference"]["kind"], cfg["reference"]["indices"])
    ok = bool(np.all(np.isfinite(centre)) and np.isfinite(ref) and ref > 0)
    return centre, ref, ok


def build_site_patches(h5_path, splits, site, cfg, seed):
    """{split: PatchSet} for one site. `cfg` is the `segment` config block, `splits` subject -> split."""
    patch = int(cfg["patch_size"])
    aug = cfg["augment"]
    with h5py.File(h5_path, "r") as h5:
        if "truth/masks" not in h5:
            raise ValueError(f"{h5_path}: no /truth/masks - paper B trains on lesion masks; supply masks in "
                             "that layout or set segment.enabled: false to skip the segmentation branch")
        indices = centre_indices(h5, site)
        t = site.target_index
        labels = h5["labels"][:, t].astype(int)
        subjects = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in h5["meta/subject"][:]])
        missing = sorted(set(subjects) - set(splits))
        if missing:
            raise ValueError(f"split file lacks {len(missing)} subjects of {h5_path}, e.g. {missing[:3]}")
        split_of = np.array([splits[s] for s in subjects])
        auto = h5["landmarks/contour"][:]
        manual = h5["landmarks/contour_manual"][:] if "landmarks/contour_manual" in h5 else np.full_like(auto, np.nan)
        known = labels >= 0
        out = {}
        for split in SPLITS:
            rows = np.flatnonzero((split_of == split) & known)
            if split != "test":
                rows = balanced_rows(rows, labels[rows], site_rng(seed, site.name, f"balance-{split}"))
            rng = site_rng(seed, site.name, f"augment-{split}")
            n_aug = site.n_augment if split != "test" else 0
            disp = site.displacement if split == "train" else 0.0
            imgs, masks, keep_rows, copies, sources = [], [], [], [], []
            counts = {"hips": len(rows), "excluded_no_landmarks": 0, "manual_fallback_to_automatic": 0}
            for row in rows:
                if split == "test":
                    centre, ref, ok = _geometry(auto[row], indices, cfg)
                    source = "automatic"
                else:
                    centre, ref, ok = _geometry(manual[row], indices, cfg)
                    source = "manual"
                    if not ok:  # no manual points for this hip: fall back to the automatic ones, counted
                        centre, ref, ok = _geometry(auto[row], indices, cfg)
                        source = "automatic"
                        counts["manual_fallback_to_automatic"] += int(ok)
                if not ok:
                    counts["excluded_no_landmarks"] += 1
                    continue
                size = P.pixel_size(ref, site.dp, patch, cfg["dp_patch_size"])
                draws = augmentation_draws(n_aug, rng, aug["max_angle"], aug["max_scale"], disp)
                thetas = [P.affine_theta(centre, size, patch, h5["images"].shape[1:], angle=a, scale=s,
                                         shift=(dx * patch * size, dy * patch * size))
                          for a, s, dx, dy in draws]
                img, mask = P.sample_patches(h5["images"][row], h5["truth/masks"][row, t], thetas, patch)
                imgs.append(P.normalise(img))
                masks.append(mask)
                keep_rows.append(np.full(len(draws), row))
                copies.append(np.arange(len(draws)))
                sources.extend([source] * len(draws))
            if imgs:
                keep = np.concatenate(keep_rows)
                out[split] = PatchSet(np.concatenate(imgs), np.concatenate(masks), keep, labels[keep],
                                      np.concatenate(copies), np.array(sources), counts)
            else:
                out[split] = PatchSet(np.zeros((0, patch, patch), np.float32), np.zeros((0, patch, patch), np.uint8),
                                      np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.array([], str), counts)
            log.info("%s %s: %d hips (%d positive) -> %d patches; %s", site.name, split, len(out[split].rows[out[split].copy == 0]),
                     int((out[split].labels[out[split].copy == 0] == 1).sum()), len(out[split].rows), counts)
    return out


def write_patch_sets(sets, site, path_like):
    """Write {split: PatchSet} to an open h5py file-like path (caller handles atomicity)."""
    with h5py.File(path_like, "w") as h5:
        h5.attrs["site"] = site.name
        h5.attrs["target"] = site.target
        for split, ps in sets.items():
            g = h5.create_group(split)
            g.create_dataset("images", data=ps.images, compression="gzip", chunks=True if len(ps.rows) else None)
            g.create_dataset("masks", data=ps.masks, compression="gzip", chunks=True if len(ps.rows) else None)
            g.create_dataset("rows", data=ps.rows.astype(np.int64))
            g.create_dataset("labels", data=ps.labels.astype(np.int8))
            g.create_dataset("copy", data=ps.copy.astype(np.int32))
            g.create_dataset("landmarks", data=np.array(ps.landmarks, dtype=object), dtype=h5py.string_dtype())
            g.attrs["counts"] = json.dumps(ps.counts)


def read_patch_set(path, split):
    with h5py.File(path, "r") as h5:
        g = h5[split]
        return PatchSet(g["images"][:], g["masks"][:], g["rows"][:], g["labels"][:].astype(int), g["copy"][:],
                        np.array([s.decode() if isinstance(s, bytes) else s for s in g["landmarks"][:]]),
                        json.loads(g.attrs["counts"]))
