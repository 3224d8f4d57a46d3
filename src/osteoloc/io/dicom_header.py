"""A DICOM radiograph's header without its pixel data: what the input check (preprocess.check) reads of
every radiograph in one fast pass, judged by the same rules as `io.dicom.read_dicom` wherever a header
alone can tell (greyscale, one frame, a linear VOI LUT function, a usable spacing) plus whether an installed
decoder handles its transfer syntax (any UID, private ones included), whether the pixel description can be
decoded at all (BitsAllocated, BitsStored, PixelRepresentation) and whether an uncompressed file
holds all of its pixels.

Like `io.dicom`, no header field that could identify a patient leaves this module: the SOPInstanceUID
leaves it only as a digest, which tells one file listed twice from two files.
"""

import functools
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from osteoloc.io.dicom import GREYSCALE, _check_spacing, _header_spacing

# Only these elements are parsed (with the file meta); the pixel data is never read.
HEADER_TAGS = ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
               "PixelRepresentation", "NumberOfFrames", "PixelSpacing", "ImagerPixelSpacing",
               "VOILUTFunction", "SOPInstanceUID")
# (FFFE,E0DD) with length 0, little endian: the last 8 bytes of a complete encapsulated pixel data element
SEQUENCE_DELIMITER = bytes.fromhex("feffdde000000000")


@dataclass(frozen=True)
class DicomHeader:
    rows: int
    cols: int
    transfer_syntax: str  # the UID
    spacing: tuple  # (row_mm, col_mm), None when unusable
    spacing_source: str  # "PixelSpacing", "ImagerPixelSpacing", "given" or "" (none)
    problems: tuple  # reasons read_dicom would refuse the file, empty when none is visible in the header
    instance: str = ""  # a digest of the SOPInstanceUID ("" when the file has none): equal for the same image

    @property
    def shape(self):
        return self.rows, self.cols

    @property
    def header_spacing(self):
        """The spacing as the tag states it (no magnification correction): what a `.pts` file's millimetres
        mean, as io.dicom.Radiograph.header_spacing."""
        return self.spacing

    @property
    def spacing_in_header(self):
        """BoneFinder writes millimetres when the DICOM has a spacing, pixels otherwise (io.dicom.Radiograph)."""
        return self.spacing_source not in ("given", "")


@functools.cache
def decoder_problem(transfer_syntax):
    """Why the installed packages cannot decode pixel data in `transfer_syntax` (a UID), or None when they
    can (pydicom's decoders and their available plugins)."""
    uid = UID(str(transfer_syntax))
    name = (f"{uid} ({uid.name})" if uid.is_transfer_syntax
            else f"{uid} (not a transfer syntax pydicom knows: a private or misspelled UID)")
    try:
        decoder = get_decoder(uid)
    except Exception:  # noqa: BLE001 - NotImplementedError, or ValueError for a UID that is no transfer syntax
        return f"transfer syntax {name}: no installed decoder handles it"
    if not decoder.is_available:
        return (f"transfer syntax {name}: no installed decoder; one of these would do: "
                f"{'; '.join(decoder.missing_dependencies)}")
    return None


def _truncation(path, syntax, rows, cols, bits):
    """Why the file was cut off (a copy that stopped early), or None: an uncompressed file must hold every
    pixel; an encapsulated one ends with the pixel data's sequence delimiter, and when something else comes
    last (rare trailing elements) the whole file is parsed to see whether its pixel data is complete."""
    size = path.stat().st_size
    if syntax.is_deflated:
        return None  # the whole data set is compressed: only decoding can tell
    if not syntax.is_encapsulated:
        needed = rows * cols * bits // 8
        return (f"truncated: the file holds {size} bytes, its {rows} x {cols} pixels need {needed}"
                if size < needed else None)
    with open(path, "rb") as file:
        file.seek(max(0, size - len(SEQUENCE_DELIMITER)))
        if file.read() == SEQUENCE_DELIMITER:
            return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns, then drops pixel data that ends early
        try:
            complete = "PixelData" in pydicom.dcmread(path)
        except Exception:  # noqa: BLE001 - any failure here means the pixel data cannot be read whole
            complete = False
    return None if complete else "truncated: the encapsulated pixel data ends before its sequence delimiter"


def _count(ds, keyword, default):
    value = ds.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        return None


def _bits_problem(ds):
    """Why the pixel description cannot be decoded (what pydicom refuses when it decodes), or None."""
    allocated, stored = _count(ds, "BitsAllocated", 16), _count(ds, "BitsStored", None)
    representation = _count(ds, "PixelRepresentation", 0)
    if allocated is None or not (allocated == 1 or (allocated % 8 == 0 and 0 < allocated <= 64)):
        return f"BitsAllocated {ds.get('BitsAllocated')} is not 1 or a multiple of 8 up to 64: cannot be decoded"
    if stored is not None and not 1 <= stored <= allocated:
        return f"BitsStored {stored} is not within 1 to BitsAllocated {allocated}: the pixel data cannot be decoded"
    if representation not in (0, 1):
        return f"PixelRepresentation {ds.get('PixelRepresentation')} is neither 0 (unsigned) nor 1 (signed)"
    return None


def _instance_digest(ds):
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    return hashlib.blake2b(uid.encode(), digest_size=12).hexdigest() if uid else ""


def read_header(path, spacing=None):
    """The header of the DICOM at `path` (pixel data not read); `spacing` (mm) is the manifest's, used only
    when the header has no usable one, as read_dicom does. Raises ValueError naming the file when it cannot
    be read as DICOM at all; every other problem is listed in `problems`."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
    except Exception as err:  # noqa: BLE001 - a damaged header can fail in many ways; all mean "unreadable"
        raise ValueError(f"{path}: not a readable DICOM file ({type(err).__name__}: {err})") from None
    problems = []
    syntax_known = True  # whether the truncation check can read the transfer syntax's encoding
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not syntax:
        problems.append("no TransferSyntaxUID in the file meta")
    else:
        problem = decoder_problem(syntax)
        if problem:
            problems.append(problem)
            syntax_known = False
    bits = _bits_problem(ds)
    if bits:
        problems.append(bits)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if _count(ds, "SamplesPerPixel", 1) != 1 or photometric not in GREYSCALE:
        problems.append(f"colour or unsupported image ({photometric or 'no PhotometricInterpretation'}), "
                        "greyscale MONOCHROME1/2 expected")
    if _count(ds, "NumberOfFrames", 1) != 1:
        problems.append("multi-frame image, one radiograph per file expected")
    voi_function = ds.get("VOILUTFunction")
    if voi_function is not None and str(voi_function).upper() != "LINEAR":
        problems.append(f"VOI LUT function {voi_function} is not LINEAR")
    rows, cols = _count(ds, "Rows", 0), _count(ds, "Columns", 0)
    if not rows or not cols:
        problems.append(f"no image size (Rows {ds.get('Rows')}, Columns {ds.get('Columns')})")
        rows, cols = rows or 0, cols or 0
    elif syntax and syntax_known and not bits:
        problem = _truncation(path, UID(syntax), rows, cols, _count(ds, "BitsAllocated", 16) or 16)
        if problem:
            problems.append(problem)
    found, source, spacing_problems = _header_spacing(ds)
    if found is None and spacing is not None and np.isfinite(spacing):
        found, source = (float(spacing), float(spacing)), "given"
    if found is None:
        problems.append("unusable pixel spacing: " + "; ".join(spacing_problems) if spacing_problems
                        else "no PixelSpacing or ImagerPixelSpacing; give a spacing in the manifest")
        source = ""
    else:
        try:
            found = _check_spacing(path, found)
        except ValueError as err:
            problems.append(str(err).removeprefix(f"{path}: "))
            found, source = None, ""
    return DicomHeader(rows=rows, cols=cols, transfer_syntax=syntax, spacing=found, spacing_source=source or "",
                       problems=tuple(problems), instance=_instance_digest(ds))
