"""A site's train / val / test patch sets from the study HDF5 (contracts.md section 2) and the split CSV.

Train and validation: balanced, centred on the manual landmarks (`/landmarks/contour_manual`), augmented.
Test: every test-split hip with a known label, centred on the automatic landmarks (`/landmarks/contour`),
not augmented - so the test set is imbalanced, as in paper B.
"""

import logging

import numpy as np

from osteoloc.io.segment_h5 import PATCH_SPLITS, PatchSet
from osteoloc.io.study_h5 import StudyFile
from osteoloc.segment import patches as P
from osteoloc.segment.sampling import augmentation_draws, balanced_rows, site_rng

log = logging.getLogger(__name__)
READ_BATCH = 64  # hips whose image and masks are in memory at once


def centre_indices(study, site):
    """The BoneFinder indices a site centres on: configured, else the target's group (`group_indices`)."""
    if site.centre:
        return list(site.centre)
    return list(study.group_indices[site.target])


def _geometry(contour, indices, cfg):
    centre = P.site_centre(contour, indices)
    ref = P.reference_length(contour, cfg["reference"]["kind"], cfg["reference"]["indices"])
    ok = bool(np.all(np.isfinite(centre)) and np.isfinite(ref) and ref > 0)
    return centre, ref, ok


def _split_of(split, subjects, h5_path):
    """The split name of every hip; every subject of the study must have one."""
    split_of = dict(zip(split["subject"].astype(str), split["split"]))
    missing = sorted(set(subjects) - set(split_of))
    if missing:
        raise ValueError(f"split file lacks {len(missing)} subjects of {h5_path}, e.g. {missing[:3]}")
    return np.array([split_of[s] for s in subjects])


def build_site_patches(h5_path, split, site, cfg, seed, manual_excluded=frozenset()):
    """{split: PatchSet} for one site. `cfg` is the `segment` config block, `split` the DataFrame
    `subject, split` (splits.read_split). Images and masks are read `READ_BATCH` hips at a time.
    `manual_excluded`: (subject, visit, side) of hips whose manual points preprocessing excluded; they
    leave training and validation (which centre on manual points) and stay in the test split (automatic)."""
    patch = int(cfg["patch_size"])
    aug = cfg["augment"]
    with StudyFile(h5_path) as study:
        if "lesions" not in study.layers:
            raise ValueError(f"{h5_path}: no lesions layer - paper B trains on lesion masks; supply masks in "
                             "the study's layout (docs/contracts.md section 2) or set segment.enabled: false to "
                             "skip the segmentation branch")
        indices = centre_indices(study, site)
        t = site.target_index
        data = study.read(["labels", "contour", "contour_manual"])
        labels = data.labels[:, t].astype(int)
        auto, manual = data.contour, data.contour_manual
        split_of = _split_of(split, study.subjects(), h5_path)
        known = labels >= 0
        meta = study.meta(("subject", "visit", "side"))
        manual_bad = np.array([hip in manual_excluded for hip in zip(meta["subject"], meta["visit"], meta["side"])],
                              dtype=bool)
        out = {}
        for name in PATCH_SPLITS:
            rows = np.flatnonzero((split_of == name) & known)
            n_manual_excluded = 0
            if name != "test":
                n_manual_excluded = int(manual_bad[rows].sum())
                rows = rows[~manual_bad[rows]]
                rows = balanced_rows(rows, labels[rows], site_rng(seed, site.name, f"balance-{name}"))
            rng = site_rng(seed, site.name, f"augment-{name}")
            n_aug = site.n_augment if name != "test" else 0
            disp = site.displacement if name == "train" else 0.0
            imgs, masks, keep_rows, copies, sources = [], [], [], [], []
            counts = {"hips": len(rows), "excluded_no_landmarks": 0, "manual_fallback_to_automatic": 0,
                      "excluded_manual_points": n_manual_excluded}
            for batch in study.batches(["image", "lesions"], rows, READ_BATCH):
                for image, lesion, row in zip(batch.image, batch.layers["lesions"][:, t], batch.rows):
                    if name == "test":
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
                    thetas = [P.affine_theta(centre, size, patch, image.shape, angle=a, scale=s,
                                             shift=(dx * patch * size, dy * patch * size))
                              for a, s, dx, dy in draws]
                    img, mask = P.sample_patches(image, lesion, thetas, patch)
                    imgs.append(P.normalise(img))
                    masks.append(mask)
                    keep_rows.append(np.full(len(draws), row))
                    copies.append(np.arange(len(draws)))
                    sources.extend([source] * len(draws))
            if imgs:
                keep = np.concatenate(keep_rows)
                out[name] = PatchSet(np.concatenate(imgs), np.concatenate(masks), keep, labels[keep],
                                     np.concatenate(copies), np.array(sources), counts)
            else:
                out[name] = PatchSet(np.zeros((0, patch, patch), np.float32), np.zeros((0, patch, patch), np.uint8),
                                     np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.array([], str), counts)
            originals = out[name].copy == 0
            log.info("%s %s: %d hips (%d positive) -> %d patches; %s", site.name, name, int(originals.sum()),
                     int((out[name].labels[originals] == 1).sum()), len(out[name].rows), counts)
    return out
