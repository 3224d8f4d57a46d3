"""DICOM radiographs: pixels as float32 plus the (row, column) pixel spacing in mm.

Only the pixel data and the spacing leave this module: no header field that could identify a patient is
ever returned, so nothing downstream can leak one.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
# Relative tolerance for calling a spacing isotropic (header values are decimal strings).
ISOTROPY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Radiograph:
    pixels: np.ndarray  # float32 (rows, cols), higher = denser (MONOCHROME1 already inverted)
    spacing: tuple  # (row_mm, col_mm)
    spacing_source: str  # "PixelSpacing", "ImagerPixelSpacing" or "given"

    @property
    def spacing_in_header(self):
        """BoneFinder writes millimetres when the DICOM has a spacing, pixels otherwise."""
        return self.spacing_source != "given"


def _header_spacing(ds):
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            return (float(value[0]), float(value[1])), keyword
    return None, None


def _check_spacing(path, spacing):
    row_mm, col_mm = (float(v) for v in spacing)
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise ValueError(f"{path}: invalid pixel spacing {spacing!r}")
    if abs(row_mm - col_mm) > ISOTROPY_TOLERANCE * max(row_mm, col_mm):
        raise ValueError(f"{path}: anisotropic pixel spacing {row_mm} x {col_mm} mm is not supported")
    return row_mm, col_mm


def read_dicom(path, spacing=None, dtype=np.float32):
    """Read one greyscale radiograph; `spacing` (mm, scalar or pair) is used only when the header has none.

    `dtype=None` keeps the decoded integer type (saves converting a whole radiograph when only crops of
    it are used); MONOCHROME1 is inverted either way.

    Raises ValueError naming the file for unreadable, non-image, colour, multi-frame, non-linear VOI LUT,
    anisotropic or spacing-less input.
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

    header_spacing, source = _header_spacing(ds)
    if header_spacing is None:
        if spacing is None:
            raise ValueError(f"{path}: no PixelSpacing or ImagerPixelSpacing; give a spacing in the manifest")
        spacing = (spacing, spacing) if np.isscalar(spacing) else tuple(spacing)
        header_spacing, source = spacing, "given"
    row_mm, col_mm = _check_spacing(path, header_spacing)

    try:
        pixels = ds.pixel_array  # compressed syntaxes decode through pydicom's pylibjpeg / RLE handlers
    except Exception as err:  # noqa: BLE001 - decoders raise many types; all mean "unusable pixel data"
        raise ValueError(f"{path}: cannot decode pixel data ({type(err).__name__}: {err})") from None
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D image, got shape {pixels.shape}")
    if dtype is not None:
        pixels = pixels.astype(dtype, copy=False)
    if photometric == "MONOCHROME1":
        if pixels.dtype.kind == "i":  # signed: max - x could overflow the type
            pixels = pixels.astype(np.float32)
        pixels = pixels.max() - pixels  # MONOCHROME1 shows low values bright: invert so bone is high
        # (x <= max, so this never wraps around in an unsigned type)
    return Radiograph(pixels=pixels, spacing=(row_mm, col_mm), spacing_source=source)


def read_radiograph(path, spacing=None):
    """Pixels (float32 (rows, cols)) and spacing (row_mm, col_mm) of a greyscale DICOM radiograph."""
    radiograph = read_dicom(path, spacing)
    return radiograph.pixels, radiograph.spacing
