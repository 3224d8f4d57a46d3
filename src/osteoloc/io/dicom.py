"""DICOM radiographs: pixels as float32 plus the (row, column) pixel spacing in mm.

Only the pixel data and the spacing leave this module: no header field that could identify a patient is
ever returned, so nothing downstream can leak one.
"""

from dataclasses import dataclass
from pathlib import Path

import logging

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
# preprocess.magnification: divide ImagerPixelSpacing by EstimatedRadiographicMagnificationFactor, or not.
MAGNIFICATION = ("correct", "ignore")
# Relative tolerance for calling a spacing isotropic (header values are decimal strings).
ISOTROPY_TOLERANCE = 1e-4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Radiograph:
    pixels: np.ndarray  # (rows, cols), modality LUT applied, higher = denser (MONOCHROME1 already inverted)
    spacing: tuple  # (row_mm, col_mm) in the object plane: the tag's value / `magnification`
    spacing_source: str  # "PixelSpacing", "ImagerPixelSpacing" or "given"
    magnification: float = 1.0  # EstimatedRadiographicMagnificationFactor the spacing was divided by (1 = none)

    @property
    def header_spacing(self):
        """(row_mm, col_mm) as the spacing tag (or the manifest) states it, before any magnification
        correction: the millimetres of a BoneFinder `.pts` file, which reads the tag as it is."""
        return tuple(v * self.magnification for v in self.spacing)

    @property
    def spacing_in_header(self):
        """BoneFinder writes millimetres when the DICOM has a spacing, pixels otherwise."""
        return self.spacing_source != "given"


def _spacing_values(raw):
    """The decimal strings of a spacing element as written: the raw bytes of an element not yet converted
    (so '0,6669' or '0.65 mm' arrive here unparsed), or the values of a converted one."""
    if raw is None or raw.value is None or raw.value == "":
        return []
    value = raw.value
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        return [v.strip() for v in value.split("\\")]
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [str(v).strip() for v in value]
    return [str(value).strip()]


def _parse_spacing(keyword, raw):
    """(row_mm, col_mm) from one spacing element, or a reason why it cannot be used."""
    values = _spacing_values(raw)
    if len(values) != 2:
        return None, (f"{keyword} holds {len(values)} value(s) {values}, DICOM requires two (row, column "
                      "spacing in mm)")
    try:
        return (float(values[0]), float(values[1])), None
    except ValueError:
        cause = ("a comma as decimal separator" if any("," in v for v in values)
                 else "a unit or other text after the number" if any(c.isalpha() for v in values for c in v)
                 else "not a decimal number")
        return None, f"{keyword} {values} is not a decimal string ({cause})"


def _header_spacing(ds):
    """The first usable header spacing: ((row_mm, col_mm), keyword, problems) with `problems` the reasons
    why earlier elements could not be used; (None, None, problems) when none is usable."""
    problems = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        # The raw element: pydicom converts DS values lazily, and a malformed one raises on conversion.
        raw = ds.get_item(keyword)
        if raw is None:
            continue
        spacing, problem = _parse_spacing(keyword, raw)
        if spacing is not None:
            return spacing, keyword, problems
        problems.append(problem)
    return None, None, problems


def _check_spacing(path, spacing):
    row_mm, col_mm = (float(v) for v in spacing)
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise ValueError(f"{path}: invalid pixel spacing {spacing!r}")
    if abs(row_mm - col_mm) > ISOTROPY_TOLERANCE * max(row_mm, col_mm):
        raise ValueError(f"{path}: anisotropic pixel spacing {row_mm} x {col_mm} mm is not supported")
    return row_mm, col_mm


def _magnification(path, ds, source, magnification):
    """The factor ImagerPixelSpacing is divided by to give the object's spacing: its
    EstimatedRadiographicMagnificationFactor when `magnification` is "correct" (DICOM: PixelSpacing, when
    present, is already in the object plane), else 1. ValueError naming the file for an unusable factor."""
    if magnification not in MAGNIFICATION:
        raise ValueError(f"preprocess.magnification must be one of {MAGNIFICATION}, got {magnification!r}")
    raw = ds.get_item("EstimatedRadiographicMagnificationFactor")
    if source != "ImagerPixelSpacing" or magnification == "ignore" or raw is None:
        return 1.0
    values = _spacing_values(raw)
    try:
        factor = float(values[0]) if len(values) == 1 else float("nan")
    except ValueError:
        factor = float("nan")
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"{path}: EstimatedRadiographicMagnificationFactor {values} is not one positive number "
                         "(set preprocess.magnification: ignore to use ImagerPixelSpacing as it is)")
    return factor


def _modality_lut(path, ds, pixels):
    """Stored values -> modality values (rescale slope and intercept, or a Modality LUT Sequence) with
    pydicom's `apply_modality_lut`; an identity rescale keeps the decoded integers as they are."""
    if "ModalityLUTSequence" not in ds:
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        if slope == 1 and intercept == 0:
            return pixels
        if slope == 0:
            raise ValueError(f"{path}: RescaleSlope is 0 (every pixel would be {intercept:g})")
    try:
        return apply_modality_lut(pixels, ds)
    except Exception as err:  # noqa: BLE001 - malformed tables fail in many ways; all mean "cannot rescale"
        raise ValueError(f"{path}: cannot apply its modality LUT ({type(err).__name__}: {err})") from None


def read_dicom(path, spacing=None, dtype=np.float32, magnification="correct"):
    """Read one greyscale radiograph; `spacing` (mm, scalar or pair) is used only when the header has none.

    The modality LUT (RescaleSlope / RescaleIntercept, negative slopes included, or a Modality LUT
    Sequence) is applied first, as DICOM defines the pixel values. `dtype=None` keeps the decoded integer
    type when that LUT is the identity (saves converting a whole radiograph when only crops of it are
    used); MONOCHROME1 is inverted either way. With only ImagerPixelSpacing (the detector's spacing) and an
    EstimatedRadiographicMagnificationFactor, the spacing is divided by that factor (`magnification`
    "correct", preprocess.magnification) to give the object's; "ignore" keeps the detector's.

    A VOI LUT Sequence (a non-linear lookup table the modality wants applied for display) is applied with
    pydicom's `apply_voi_lut` after the modality LUT (its input), the first table when there are several.
    A header spacing that cannot be read (one value, a comma decimal, a unit suffix) counts as absent: the
    given spacing replaces it (logged), else the error names the element, its value and the cause.

    Raises ValueError naming the file for unreadable, non-image, colour, multi-frame, non-linear VOI LUT
    function, unusable VOI LUT Sequence, anisotropic or spacing-less input.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # noqa: BLE001 - a damaged header can fail in many ways; all mean "unreadable"
        raise ValueError(f"{path}: not a readable DICOM file ({type(err).__name__}: {err})") from None
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM holds no image (no PixelData)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if int(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in GREYSCALE:
        raise ValueError(f"{path}: colour or unsupported image ({photometric or 'no PhotometricInterpretation'}), "
                         "greyscale MONOCHROME1/2 expected")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError(f"{path}: multi-frame image, one radiograph per file expected")
    voi_function = ds.get("VOILUTFunction")
    if voi_function is not None and str(voi_function).upper() != "LINEAR":
        raise ValueError(f"{path}: VOI LUT function {voi_function} is not LINEAR")

    header_spacing, source, problems = _header_spacing(ds)
    if header_spacing is None:
        if spacing is None:
            if problems:
                raise ValueError(f"{path}: unusable pixel spacing: {'; '.join(problems)}; give a spacing in the "
                                 "manifest")
            raise ValueError(f"{path}: no PixelSpacing or ImagerPixelSpacing; give a spacing in the manifest")
        if problems:
            log.warning("%s: %s; using the manifest's spacing %s mm", path, "; ".join(problems), spacing)
        spacing = (spacing, spacing) if np.isscalar(spacing) else tuple(spacing)
        header_spacing, source = spacing, "given"
    row_mm, col_mm = _check_spacing(path, header_spacing)
    factor = _magnification(path, ds, source, magnification)

    try:
        pixels = ds.pixel_array  # compressed syntaxes decode through pydicom's pylibjpeg / RLE handlers
    except Exception as err:  # noqa: BLE001 - decoders raise many types; all mean "unusable pixel data"
        raise ValueError(f"{path}: cannot decode pixel data ({type(err).__name__}: {err})") from None
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D image, got shape {pixels.shape}")
    if "VOILUTSequence" in ds:  # before any type change: the table is indexed by the stored integers
        pixels = _apply_voi_lut_sequence(path, ds, pixels)  # the modality LUT included (its input)
    else:
        pixels = _modality_lut(path, ds, pixels)
    if dtype is not None:
        pixels = pixels.astype(dtype, copy=False)
    if photometric == "MONOCHROME1":
        if pixels.dtype.kind == "i":  # signed: max - x could overflow the type
            pixels = pixels.astype(np.float32)
        pixels = pixels.max() - pixels  # MONOCHROME1 shows low values bright: invert so bone is high
        # (x <= max, so this never wraps around in an unsigned type)
    return Radiograph(pixels=pixels, spacing=(row_mm / factor, col_mm / factor), spacing_source=source,
                      magnification=factor)


def _apply_voi_lut_sequence(path, ds, pixels):
    """The stored pixels through the modality LUT and the first table of the VOI LUT Sequence (pydicom)."""
    try:
        lut = ds.VOILUTSequence[0]
        if "LUTData" not in lut or "LUTDescriptor" not in lut:
            raise ValueError("the first item lacks LUTDescriptor or LUTData")
        out = apply_voi_lut(apply_modality_lut(pixels, ds), ds, index=0, prefer_lut=True)
    except Exception as err:  # noqa: BLE001 - malformed tables fail in many ways; all mean "cannot display"
        raise ValueError(f"{path}: cannot apply its VOI LUT Sequence ({type(err).__name__}: {err})") from None
    if len(ds.VOILUTSequence) > 1:
        log.info("%s: %d VOI LUTs, the first one applied", path, len(ds.VOILUTSequence))
    return out


def read_radiograph(path, spacing=None, magnification="correct"):
    """Pixels (float32 (rows, cols)) and spacing (row_mm, col_mm) of a greyscale DICOM radiograph."""
    radiograph = read_dicom(path, spacing, magnification=magnification)
    return radiograph.pixels, radiograph.spacing
