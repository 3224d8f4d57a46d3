"""Expert references: an optional CSV of expert annotations that stand in for the phantom's lesion truth on
real data, so the pointing game and the energy inside the region run where such a subset exists
(docs/contracts.md section 1, docs/evaluation.md).

One row per hip, target and annotation: `subject, visit, side, target, kind` and, by kind, `unit, x, y`
(point), `unit, x, y, x2, y2` (box corners) or `mask_path` (a mask file the size of the radiograph). A
reference is drawn in the source radiograph's pixel grid as the file stores it (`ExpertReferences.masks`),
and preprocessing maps it through the resampling, crop and flip of the landmarks (`preprocess.sources`).

Everything that can be judged from the CSV alone is judged when it is read (unknown target, kind or unit,
missing or malformed coordinates, a missing mask file); what needs the radiograph (a point or box outside
the image, a mask file of the wrong size or empty) when the hip is drawn. Either way a `ExpertReferenceError`
names the file, the line and the problem and stops the run: a reference is never silently dropped.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osteoloc.cohort.landmarks import outside_image
from osteoloc.io.errors import ExpertReferenceError
from osteoloc.io.labels import MISSING_SPELLINGS, hip_key, read_csv_table
from osteoloc.names import SHORT_NAMES, TARGETS

REQUIRED_COLUMNS = ("subject", "visit", "side", "target", "kind")
KINDS = ("point", "box", "mask")
UNITS = ("mm", "px")
COORDINATES = {"point": ("x", "y"), "box": ("x", "y", "x2", "y2"), "mask": ()}
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
# Full and short target names both name a target (osteo_fem_sup, fem_sup), any case.
_TARGET_INDEX = {name: t for t, target in enumerate(TARGETS) for name in (target, SHORT_NAMES[target])}
# Pillow modes of a single-channel image (bilevel, 8-bit, 16-bit, 32-bit integer or float).
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class Reference:
    """One row: `target` its index in TARGETS; `coords` (x, y) or (x, y, x2, y2) in `unit` ("mm" from the
    top-left pixel's centre, or "px"; x = column, y = row), () for a mask; `mask_path` resolved ("" unless
    a mask); `line` its line in the file (the header is line 1)."""

    line: int
    target: int
    kind: str
    unit: str
    coords: tuple
    mask_path: str


def _text(value):
    return "" if value is None else str(value).strip()


def _number(where, column, value):
    """One coordinate cell -> float; ExpertReferenceError with the likely cause for anything else."""
    text = _text(value)
    if text.lower() in MISSING_SPELLINGS:
        raise ExpertReferenceError(f"{where}: {column} is empty")
    if re.fullmatch(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[-+]?[0-9]+)?", text, flags=re.IGNORECASE):
        value = float(text)
        if not np.isfinite(value):  # 1e999 overflows
            raise ExpertReferenceError(f"{where}: {column} {text!r} is not a finite number")
        return value
    if re.fullmatch(r"[-+]?(inf|infinity|nan)", text, flags=re.IGNORECASE):
        raise ExpertReferenceError(f"{where}: {column} {text!r} is not a finite number")
    cause = ("a comma as decimal separator: write 12.5" if re.fullmatch(r"[-+]?[0-9]*,[0-9]+", text)
             else "a unit or other text after the number: give the number only, the unit in column unit"
             if re.search("[a-z]", text, re.I) else "not a number")
    raise ExpertReferenceError(f"{where}: {column} {text!r} is not a coordinate ({cause})")


def _row(path, line, row, base):
    """One CSV row -> (hip key, (subject, visit) as written, Reference); ExpertReferenceError naming the line."""
    where = f"{path}: line {line}"
    subject, visit = _text(row["subject"]), _text(row["visit"])
    if not subject or not visit:
        raise ExpertReferenceError(f"{where}: subject and visit must not be empty")
    try:
        key = hip_key(subject, visit, row["side"])
    except ValueError as err:
        raise ExpertReferenceError(f"{where}: {err} (right, left, R or L)") from None
    target = _TARGET_INDEX.get(_text(row["target"]).lower())
    if target is None:
        raise ExpertReferenceError(f"{where}: unknown target {row['target']!r} (one of {', '.join(TARGETS)} or "
                                   f"{', '.join(SHORT_NAMES.values())})")
    kind = _text(row["kind"]).lower()
    if kind not in KINDS:
        raise ExpertReferenceError(f"{where}: unknown kind {row['kind']!r} (one of {', '.join(KINDS)})")
    unit = _text(row.get("unit")).lower()
    used = COORDINATES[kind]
    stray = [c for c in ("x", "y", "x2", "y2") if c not in used and _text(row.get(c)).lower() not in MISSING_SPELLINGS]
    if stray:  # a box with kind point, say: refuse rather than guess which column is wrong
        raise ExpertReferenceError(f"{where}: a {kind} takes {', '.join(used) or 'no coordinates'}, but "
                                   f"{', '.join(stray)} given")
    mask_path = _text(row.get("mask_path"))
    if kind == "mask":
        if unit not in ("", "px"):
            raise ExpertReferenceError(f"{where}: unit {unit!r} for a mask (a mask file is in the radiograph's pixel "
                                       "grid: leave unit empty or px)")
        if not mask_path:
            raise ExpertReferenceError(f"{where}: kind mask needs a mask_path")
        mask_path = Path(mask_path) if Path(mask_path).is_absolute() else base / mask_path
        if mask_path.suffix.lower() not in MASK_SUFFIXES:
            raise ExpertReferenceError(f"{where}: mask file {mask_path.name} is not one of {', '.join(MASK_SUFFIXES)}")
        if not mask_path.is_file():
            raise ExpertReferenceError(f"{where}: mask file {mask_path.name} not found in {mask_path.parent} "
                                       "(relative paths start from the CSV's folder)")
        return key, (subject, visit), Reference(line, target, kind, "", (), str(mask_path))
    if unit not in UNITS:
        raise ExpertReferenceError(f"{where}: unit {row.get('unit', '')!r} for a {kind} (mm or px)")
    if mask_path:
        raise ExpertReferenceError(f"{where}: a {kind} takes no mask_path (kind mask does)")
    coords = tuple(_number(where, column, row.get(column)) for column in used)
    return key, (subject, visit), Reference(line, target, kind, unit, coords, "")


def read_mask_file(path):
    """A mask file as a bool array (rows, cols), True where nonzero: `.npy` (a 2-D array) or a
    single-channel PNG / TIFF (8- or 16-bit). Raises ValueError naming the file otherwise."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            mask = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"mask file {path.name} cannot be read as .npy ({err})") from None
    else:
        from PIL import Image

        try:
            with Image.open(path) as image:
                if image.mode not in _GREY_MODES:
                    raise ValueError(f"mask file {path.name} has {image.mode} pixels: save it as a single-channel "
                                     "(greyscale) image, nonzero inside")
                mask = np.asarray(image)
        except OSError as err:
            raise ValueError(f"mask file {path.name} cannot be read as an image ({err})") from None
    if mask.ndim != 2:
        raise ValueError(f"mask file {path.name} holds a {mask.ndim}-D array, a 2-D mask expected")
    return mask != 0


def _pixel(value, length):
    """The pixel holding coordinate `value` (px) on an axis of `length` pixels (centres at 0 .. length - 1)."""
    return int(np.clip(np.floor(value + 0.5), 0, length - 1))


class ExpertReferences:
    """The references CSV at `path`, read and checked row by row: `by_hip` {hip key: [Reference]} in file
    order. Raises ExpertReferenceError naming the file and line for a bad row, ValueError naming the file when it
    is not a comma-separated UTF-8 table with the required columns (`io.labels.read_csv_table`)."""

    def __init__(self, path):
        self.path = Path(path)
        frame = read_csv_table(self.path, "references CSV", REQUIRED_COLUMNS)
        base = self.path.resolve().parent
        self.by_hip, self.spelled = {}, {}
        for line, row in enumerate(frame.to_dict(orient="records"), start=2):  # line 1 is the header
            key, spelled, reference = _row(self.path, line, row, base)
            self.by_hip.setdefault(key, []).append(reference)
            self.spelled.setdefault(key, spelled)

    def __len__(self):
        return sum(map(len, self.by_hip.values()))

    def of_hip(self, subject, visit, side):
        """The hip's references ([] when it has none)."""
        return self.by_hip.get(hip_key(subject, visit, side), [])

    def mask_files(self, subject, visit):
        """Mask files of both hips of one radiograph (inputs of its preprocessing job)."""
        return [ref.mask_path for side in ("right", "left") for ref in self.of_hip(subject, visit, side)
                if ref.mask_path]

    def unmatched(self, hip_keys):
        """(subject, visit, side, lines) of the hips that have references but are not among `hip_keys`."""
        return [(*self.spelled[key], key[2], [ref.line for ref in refs])
                for key, refs in sorted(self.by_hip.items()) if key not in hip_keys]

    def draw(self, subject, visit, side, shape, spacing):
        """The hip's references drawn in the grid of a radiograph of `shape` (rows, cols) and `spacing`
        (row_mm, col_mm): a `Drawn` (the `lesions` layer (4, rows, cols) uint8, TARGETS order, 1 inside,
        several rows of one target united; and each row's pixels), None when the hip has no reference. A
        point is the one pixel holding it (the pointing game's tolerance applies on top), a box every
        pixel from the one holding (x, y) to the one holding (x2, y2). Raises ExpertReferenceError naming the
        line for a point or corner outside the image and a mask file that is unreadable, of another size than
        the radiograph or empty."""
        references = self.of_hip(subject, visit, side)
        if not references:
            return None
        lesions = np.zeros((len(TARGETS), *shape), np.uint8)
        pixels = []
        for ref in references:
            ys, xs = self._pixels(ref, shape, spacing)
            lesions[ref.target, ys, xs] = 1
            pixels.append((ref, ys, xs))
        return Drawn(lesions=lesions, pixels=pixels)

    def _pixels(self, ref, shape, spacing):
        """(rows, cols) index arrays of the pixels one reference covers; ExpertReferenceError naming its line."""
        rows, cols = shape
        where = f"{self.path}: line {ref.line}"
        if ref.kind == "mask":
            try:
                mask = read_mask_file(ref.mask_path)
            except ValueError as err:
                raise ExpertReferenceError(f"{where}: {err}") from None
            if mask.shape != (rows, cols):
                raise ExpertReferenceError(f"{where}: mask file {Path(ref.mask_path).name} is {mask.shape[1]} x "
                                           f"{mask.shape[0]} px, the radiograph {cols} x {rows} px")
            if not mask.any():
                raise ExpertReferenceError(f"{where}: mask file {Path(ref.mask_path).name} is empty (no nonzero "
                                           "pixel); leave the row out for a hip without a reference")
            return np.nonzero(mask)
        xy = np.asarray(ref.coords, dtype=np.float64).reshape(-1, 2)
        if ref.unit == "mm":
            xy = xy / [spacing[1], spacing[0]]
        if outside_image(xy, shape):
            hint = " (pixels given as mm?)" if ref.unit == "mm" else " (millimetres given as px?)"
            given = ", ".join(f"{v:g}" for v in ref.coords)
            raise ExpertReferenceError(f"{where}: {ref.kind} ({given} {ref.unit}) lies outside the {cols} x {rows} "
                                       f"px radiograph{hint}")
        corners = [(_pixel(x, cols), _pixel(y, rows)) for x, y in xy]  # a point is its own two corners
        (c0, r0), (c1, r1) = corners[0], corners[-1]
        ys, xs = np.mgrid[min(r0, r1):max(r0, r1) + 1, min(c0, c1):max(c0, c1) + 1]
        return ys.ravel(), xs.ravel()

    def lost_in_crop(self, drawn, crop_lesions):
        """A reason for each target whose drawn reference (`drawn`, a `Drawn` in the source grid) has no pixel
        left in the hip crop's lesions layer (`crop_lesions`, (4, S, S)): its pointing game and energy will
        be NaN."""
        lines = {}
        for ref, _, _ in drawn.pixels:
            lines.setdefault(ref.target, []).append(str(ref.line))
        return [f"expert reference of {SHORT_NAMES[TARGETS[t]]} (line {', '.join(lines[t])}) lies outside the hip "
                "crop: no pointing game or energy for it"
                for t in sorted(lines) if drawn.lesions[t].any() and not crop_lesions[t].any()]

    def far_from_groups(self, drawn, group_points, spacing, max_mm):
        """A reason for each reference row lying more than `max_mm` from its target's landmark group:
        `group_points` {target index: (k, 2) source-pixel points (x, y)}, `spacing` (row_mm, col_mm). The
        distance is the smallest between a pixel the reference covers and a point of the group; a far
        reference is kept (its metrics are computed), the note says where to look."""
        reasons = []
        for ref, ys, xs in drawn.pixels:
            group = np.asarray(group_points[ref.target], dtype=np.float64)
            dx = (xs[:, None] - group[None, :, 0]) * spacing[1]
            dy = (ys[:, None] - group[None, :, 1]) * spacing[0]
            distance = float(np.sqrt(dx * dx + dy * dy).min())
            if distance > max_mm:
                hint = {"mm": " (pixels given as mm?)", "px": " (millimetres given as px?)"}.get(ref.unit, "")
                reasons.append(f"expert reference of {SHORT_NAMES[TARGETS[ref.target]]} (line {ref.line}) lies "
                               f"{distance:.0f} mm from its target's landmark group, more than "
                               f"preprocess.references_max_distance_mm = {max_mm:g} mm{hint}")
        return reasons


@dataclass(frozen=True)
class Drawn:
    """A hip's references in the radiograph's grid: the `lesions` layer (4, rows, cols) uint8 and, per row,
    (Reference, row indices, column indices) of the pixels it covers."""

    lesions: np.ndarray
    pixels: list

    def mirrored(self, width):
        """The same references on the horizontally mirrored radiograph `width` pixels wide."""
        return Drawn(lesions=self.lesions[..., ::-1], pixels=[(ref, ys, width - 1 - xs) for ref, ys, xs in self.pixels])
