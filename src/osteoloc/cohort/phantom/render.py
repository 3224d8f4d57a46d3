"""Rasterise a phantom scene into a radiograph: soft tissue, bone with cortex and texture, lesions, noise.

Shapes arrive in image millimetres; pixel (row i, column j) sits at x = j * spacing, y = i * spacing.
Polygons are filled with Pillow on a 2x supersampled canvas (fast, C) and averaged down, so edges are
anti-aliased; the rest is whole-array numpy / scipy.ndimage.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

SUPERSAMPLE = 2


class Lesion(NamedTuple):
    """A bony protrusion to draw (image mm). Its truth mask and its density are the part of `polygon` outside
    its `host` bone ("femur" / "pelvis") shifted by `host_shift`: (0, 0) for a lesion growing from its bone;
    a lesion moved off or over its bone (lesions.py, "across") carries the bit of bone that clipped it along,
    so it keeps its shape."""

    polygon: np.ndarray
    host: str
    host_shift: tuple = (0.0, 0.0)


@dataclass
class Scene:
    """Everything to draw in one radiograph, in image millimetres."""

    shape: tuple  # (rows, cols)
    spacing: float  # mm per pixel
    femurs: list = field(default_factory=list)  # closed polygons
    pelves: list = field(default_factory=list)  # (polygon, hole polygon)
    sacrum: np.ndarray | None = None
    ridges: list = field(default_factory=list)  # (polyline, width mm, strength)
    lesions: dict = field(default_factory=dict)  # (side index, target index) -> Lesion
    mimics: list = field(default_factory=list)  # Lesion: ungraded bumps, no truth
    placements: dict = field(default_factory=dict)  # (side index, target index) -> lesions.Placement (not drawn)
    markers: list = field(default_factory=list)  # closed polygons of burned-in cue markers


def _rasterise(shapes, shape, spacing, pad_mm, draw, window=None):
    """Coverage (0-1) of what `draw(ImageDraw, to_canvas)` paints, on a supersampled canvas covering only
    the bounding box of `shapes` (+ pad_mm), within `window` (row0, row1, col0, col1) when given: a small
    lesion on a clinical-size image costs what it covers."""
    rows, cols = shape
    lo, hi = (0, 0), (cols, rows)
    if window is not None:
        lo, hi = (window[2], window[0]), (window[3], window[1])
    allpts = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in shapes]) / spacing
    pad = pad_mm / spacing + 2
    c0, r0 = np.clip(np.floor(allpts.min(axis=0) - pad).astype(int), lo, hi)
    c1, r1 = np.clip(np.ceil(allpts.max(axis=0) + pad).astype(int) + 1, lo, hi)
    out = np.zeros(shape, np.float32)
    if c1 <= c0 or r1 <= r0:
        return out
    img = Image.new("L", (int(c1 - c0) * SUPERSAMPLE, int(r1 - r0) * SUPERSAMPLE), 0)

    def to_canvas(points_mm):
        p = (np.asarray(points_mm, dtype=float) / spacing - [c0, r0] + 0.5) * SUPERSAMPLE - 0.5
        return [tuple(q) for q in p]

    draw(ImageDraw.Draw(img), to_canvas)
    a = np.asarray(img, dtype=np.float32).reshape(r1 - r0, SUPERSAMPLE, c1 - c0, SUPERSAMPLE)
    out[r0:r1, c0:c1] = a.mean(axis=(1, 3)) / 255.0
    return out


def fill(polygons, shape, spacing, holes=(), window=None):
    """Anti-aliased coverage (0-1) of the union of `polygons` minus `holes` (only within `window`, see
    _rasterise, when given)."""

    def draw(d, to_canvas):
        for poly in polygons:
            d.polygon(to_canvas(poly), fill=255)
        for hole in holes:
            d.polygon(to_canvas(hole), fill=0)

    return _rasterise(list(polygons), shape, spacing, 0.0, draw, window)


def stroke(polyline, width_mm, shape, spacing):
    """Anti-aliased coverage of a polyline drawn `width_mm` wide."""
    width = max(1, int(round(width_mm / spacing * SUPERSAMPLE)))
    return _rasterise([polyline], shape, spacing, width_mm,
                      lambda d, to_canvas: d.line(to_canvas(polyline), fill=255, width=width, joint="curve"))


def smooth_field(shape, rng, cells, sigma_px):
    """Low-frequency random field, unit scale: white noise on a coarse grid, smoothed and upsampled.

    The smoothing runs on the coarse grid (sigma scaled down), so its cost does not grow with sigma_px
    on a clinical-size image."""
    rows, cols = shape
    coarse = rng.standard_normal((max(2, rows // cells), max(2, cols // cells))).astype(np.float32)
    factor = (rows / coarse.shape[0], cols / coarse.shape[1])
    coarse = ndimage.gaussian_filter(coarse, (sigma_px / factor[0], sigma_px / factor[1]))
    return ndimage.zoom(coarse, factor, order=1, grid_mode=True, mode="nearest")[:rows, :cols]


@dataclass
class Look:
    """How the image looks: contrasts and noise (relative to a cortical-bone density of 1)."""

    lesion_contrast: float = 0.8
    noise_sd: float = 0.08
    texture_sd: float = 0.10
    exposure_gain: float = 1.0
    exposure_offset: float = 0.0
    blur_mm: float = 0.35


@dataclass
class Rendered:
    """One drawn scene. Images are float32 (rows, cols), bone bright, in image intensity units."""

    image: np.ndarray  # the radiograph, burned-in markers included
    twin: np.ndarray  # the same radiograph (same draws, same noise) without the markers
    lesion_masks: dict  # (side index, target index) -> bool (rows, cols)
    bones: dict  # "femur", "pelvis" -> bool (rows, cols)
    cue: list  # per entry of scene.markers: float32 (rows, cols), what that marker adds to `twin`


def render(scene, look, rng):
    """Draw `scene` (every random draw comes from `rng`, in the same order whatever the markers).

    The markers are the last layer: `image` is `twin` (the marker-free radiograph, noise included) plus the
    blurred, exposure-scaled marker layers (`cue_layers`). Each layer is exactly 0 beyond the blur
    kernel's reach and x + 0.0 == x, so there `image` equals `twin` bit for bit.
    """
    twin, lesion_masks, bones = _render_base(scene, look, rng)
    layers = cue_layers(scene, look)
    image = twin.copy()
    for layer in layers:
        image += layer
    return Rendered(image=image, twin=twin, lesion_masks=lesion_masks, bones=bones, cue=layers)


def cue_layers(scene, look):
    """What each burned-in marker of `scene` adds to the rendered image (float32 (rows, cols) each, image
    intensity units): its coverage times 3 (brighter than bone over bone), blurred like the rest of the
    image and scaled by the exposure gain. Blur and gain are linear, so adding the layer after them equals
    drawing the marker before them; scipy's truncated Gaussian leaves the layer exactly 0 beyond
    4 sigma (about 2 px at the phantom's spacings)."""
    sigma = look.blur_mm / scene.spacing
    return [look.exposure_gain * ndimage.gaussian_filter(3.0 * fill([poly], scene.shape, scene.spacing), sigma)
            for poly in scene.markers]


def host_coverage(scene, shift=(0.0, 0.0), window=None, hosts=("femur", "pelvis")):
    """Anti-aliased coverage (0-1, (rows, cols)) of the femurs and of the hemipelves (foramina cut out) of
    `scene` (of `hosts` only), every outline shifted by `shift` (image mm), only within `window` (see
    _rasterise) if given."""
    d = np.asarray(shift, dtype=float)
    out = {}
    if "femur" in hosts:
        out["femur"] = fill([f + d for f in scene.femurs], scene.shape, scene.spacing, window=window)
    if "pelvis" in hosts:
        out["pelvis"] = fill([p + d for p, _ in scene.pelves], scene.shape, scene.spacing,
                             holes=[h + d for _, h in scene.pelves], window=window)
    return out


def lesion_window(scene, polygon):
    """(row0, row1, col0, col1): the pixels a polygon (image mm) can cover, 3 px of margin, within the image."""
    rows, cols = scene.shape
    pts = np.asarray(polygon, dtype=float) / scene.spacing
    c0, r0 = np.clip(np.floor(pts.min(axis=0)).astype(int) - 3, 0, [cols, rows])
    c1, r1 = np.clip(np.ceil(pts.max(axis=0)).astype(int) + 4, 0, [cols, rows])
    return int(r0), int(r1), int(c0), int(c1)


def lesion_coverage(scene, lesion, bone, window=None):
    """Coverage (0-1) of `lesion` (a Lesion) outside its host bone: its density; >= 0.5 is its truth mask.
    `bone`: host_coverage(scene), used when the lesion's host is not shifted (a shifted host is drawn
    within the lesion's own window only). With `window` (lesion_window's), only that part of the image."""
    polygon, host, shift = lesion
    coverage = fill([polygon], scene.shape, scene.spacing)
    box = lesion_window(scene, polygon)
    if any(shift):
        bone = host_coverage(scene, shift, box, hosts=(host,))
    if window is None:
        return coverage * (1.0 - bone[host])
    r0, r1, c0, c1 = window
    return coverage[r0:r1, c0:c1] * (1.0 - bone[host][r0:r1, c0:c1])


def _render_base(scene, look, rng):
    """The radiograph without the markers (image, lesion masks, bone masks): every random draw of render."""
    shape, sp = scene.shape, scene.spacing
    rows, cols = shape
    x = np.arange(cols, dtype=np.float32) * sp
    width_mm = cols * sp
    # Soft tissue: thicker at the body's centre, with slow random thickness variation.
    tissue = 0.45 + 0.30 * np.exp(-(((x - width_mm / 2) / (0.42 * width_mm)) ** 2))
    image = np.broadcast_to(tissue, shape).astype(np.float32).copy()
    image += 0.06 * smooth_field(shape, rng, cells=40, sigma_px=12 / sp)

    bone = host_coverage(scene)
    femur, pelvis = bone["femur"], bone["pelvis"]
    sacrum = fill([scene.sacrum], shape, sp) if scene.sacrum is not None else 0.0

    lesion_masks = {}
    extra = np.zeros(shape, np.float32)
    for key, lesion in scene.lesions.items():
        cov = lesion_coverage(scene, lesion, bone)
        lesion_masks[key] = cov >= 0.5
        extra = np.maximum(extra, cov)
    mimic = np.zeros(shape, np.float32)
    for lesion in scene.mimics:
        mimic = np.maximum(mimic, lesion_coverage(scene, lesion, bone))

    # Bone: additive path lengths (the head overlapping the acetabulum is brighter), a bright cortex
    # rim inside every edge, and trabecular texture that hides small protrusions in anatomical variation.
    solid = femur + pelvis + 0.7 * sacrum
    cortex = np.clip(femur - ndimage.gaussian_filter(femur, 1.5 / sp), 0, None)
    cortex += np.clip(pelvis - ndimage.gaussian_filter(pelvis, 1.5 / sp), 0, None)
    texture = smooth_field(shape, rng, cells=3, sigma_px=0.6 / sp)
    texture /= texture.std() + 1e-6
    image += 1.0 * solid + 0.9 * cortex + look.texture_sd * texture * np.clip(solid, 0, 1)
    for line, width, strength in scene.ridges:
        image += strength * stroke(line, width, shape, sp)
    image += look.lesion_contrast * (extra + mimic)

    image = ndimage.gaussian_filter(image, look.blur_mm / sp)
    image = look.exposure_gain * image + look.exposure_offset
    image += look.noise_sd * rng.standard_normal(shape).astype(np.float32)
    return image.astype(np.float32), lesion_masks, {"femur": femur >= 0.5, "pelvis": pelvis >= 0.5}
