"""Write phantom radiographs as DICOM in the variety met in the wild.

Two IODs: Digital X-Ray Image For Presentation (DX) and Computed Radiography (CR); MONOCHROME1 or 2;
10, 12, 14 or 16 bits stored; spacing in PixelSpacing and/or ImagerPixelSpacing; five transfer syntaxes
(TRANSFER_SYNTAXES): native Explicit VR Little Endian, RLE Lossless and JPEG 2000 Lossless (pydicom's
encoders), JPEG-LS Lossless and JPEG Lossless SV1 (process 14) through dcmtk's `dcmcjpls` / `dcmcjpeg`,
for which pydicom has no encoder in the pinned dependencies. Every UID is derived from the generator's seed,
so the same configuration writes the same bytes.
"""

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless,
                         RLELossless)

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
# config name -> (transfer syntax UID, dcmtk command converting a native file, or None for pydicom)
TRANSFER_SYNTAXES = {
    "explicit": (ExplicitVRLittleEndian, None),
    "rle": (RLELossless, None),
    "jpeg2000": (JPEG2000Lossless, None),
    "jpegls": (JPEGLSLossless, ("dcmcjpls", "--encode-lossless")),
    "jpeg_lossless": (JPEGLosslessSV1, ("dcmcjpeg", "--encode-lossless-sv1", "--true-lossless")),
}
BITS_STORED = (10, 12, 14, 16)


@dataclass
class Variant:
    """How one radiograph is encoded."""

    iod: str = "DX"  # DX | CR
    photometric: str = "MONOCHROME2"
    bits_stored: int = 16
    spacing_tags: tuple = ("ImagerPixelSpacing",)  # PixelSpacing and/or ImagerPixelSpacing
    transfer_syntax: str = "explicit"  # a key of TRANSFER_SYNTAXES


@dataclass
class Identity:
    """The fake patient identity and the study's deterministic UIDs and dates."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_date: str
    accession: str
    study_uid: str
    series_uid: str
    sop_uid: str


def uid(*entropy):
    """A deterministic `2.25.` UID (UUID-derived form, PS3.5 B.2) from the given values (seed, subject, ...).

    pydicom's generate_uid ignores its entropy for the 2.25 root, so the hash is taken here.
    """
    digest = hashlib.sha256("\x1f".join(str(e) for e in entropy).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def value_range(image):
    """(lo, hi): the 0.1 and 99.9 percentiles of a float image, the window a detector's auto-ranging sets."""
    lo, hi = np.percentile(image, [0.1, 99.9])
    return lo, hi


def to_stored(image, bits_stored, photometric, window=None):
    """Map a float image (bone bright, values roughly 0-3) to unsigned stored values.

    The scale maps `window` (lo, hi), by default the image's own `value_range` as a detector's
    auto-ranging would, to 5-90 % of the stored range; a counterfactual twin passes its radiograph's window
    so that equal float pixels store equal values. MONOCHROME1 stores the inverse so that a viewer (and a
    correct reader) shows bone bright either way.
    """
    top = (1 << bits_stored) - 1
    lo, hi = value_range(image) if window is None else window
    scaled = (image - lo) / max(hi - lo, 1e-6) * 0.85 * top + 0.05 * top
    stored = np.clip(np.rint(scaled), 0, top).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)
    return stored


def build_dataset(stored, spacing, variant, who, *, laterality="B"):
    """A complete DICOM dataset (with file meta) holding `stored` (uint16 rows x cols)."""
    rows, cols = stored.shape
    sop_class = DX_FOR_PRESENTATION if variant.iod == "DX" else CR_IMAGE
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = who.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid("osteoloc", "phantom", "implementation")
    meta.ImplementationVersionName = "OSTEOLOC_PH1"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = who.sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = who.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "093000"
    ds.AccessionNumber = who.accession
    ds.Manufacturer = "osteoloc phantom"
    ds.InstitutionName = "Phantom Hospital"
    ds.ReferringPhysicianName = ""
    ds.StationName = "PHANTOM1"
    ds.StudyDescription = "PELVIS AP"
    ds.SeriesDescription = "AP pelvis weight-bearing"
    ds.ManufacturerModelName = "Synthetic"
    ds.PatientName = who.patient_name
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = who.sex
    ds.BodyPartExamined = "PELVIS"
    ds.StudyInstanceUID = who.study_uid
    ds.SeriesInstanceUID = who.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]  # columns run to the patient's left, rows to the feet
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if variant.iod == "DX":
        ds.Modality = "DX"
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = laterality
        ds.AnatomicRegionSequence = Sequence([_code("12921003", "SCT", "Pelvis")])
        ds.ViewPosition = "AP"
        ds.ViewCodeSequence = Sequence([_code("399348003", "SCT", "antero-posterior")])
        ds.PositionerType = "NONE"
        ds.PixelIntensityRelationship = "LIN"
        # +1: lower stored values mean less beam intensity (bone dark), as MONOCHROME1 stores bone.
        ds.PixelIntensityRelationshipSign = 1 if variant.photometric == "MONOCHROME1" else -1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "INVERSE" if variant.photometric == "MONOCHROME1" else "IDENTITY"
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"
        ds.DetectorType = "SCINTILLATOR"
        ds.AcquisitionContextSequence = Sequence([])
    else:
        ds.Modality = "CR"
        ds.ViewPosition = "AP"
    top = (1 << variant.bits_stored) - 1
    ds.WindowCenter = top // 2
    ds.WindowWidth = top
    ds.VOILUTFunction = "LINEAR"
    for tag in variant.spacing_tags:
        setattr(ds, tag, [f"{spacing:.4f}", f"{spacing:.4f}"])
    if "PixelSpacing" in variant.spacing_tags and variant.iod == "DX":
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "phantom geometry"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = variant.photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = variant.bits_stored
    ds.HighBit = variant.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    if variant.transfer_syntax == "rle":
        ds.compress(RLELossless, encoding_plugin=_rle_plugin(), generate_instance_uid=False)
    elif variant.transfer_syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    return ds


def _code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _rle_plugin():
    """pylibjpeg-rle when installed (fast); pydicom's own encoder otherwise. Both are lossless."""
    from pydicom.pixels.encoders import RLELosslessEncoder

    return "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder._available else "pydicom"


def dcmtk_missing(transfer_syntaxes):
    """The dcmtk programs the given transfer syntax names need that are not on PATH (empty when none)."""
    for name in transfer_syntaxes:
        if name not in TRANSFER_SYNTAXES:
            raise ValueError(f"unknown transfer syntax {name!r}; expected one of {sorted(TRANSFER_SYNTAXES)}")
    tools = {TRANSFER_SYNTAXES[n][1][0] for n in transfer_syntaxes if TRANSFER_SYNTAXES[n][1]}
    return sorted(t for t in tools if shutil.which(t) is None)


def write(path, ds, transfer_syntax="explicit"):
    """Write as a DICOM Part 10 file; `transfer_syntax` names a dcmtk-encoded syntax or the one `ds` has.

    A dcmtk syntax: `ds` (native) is written to a temporary file and converted by the dcmtk program in a
    subprocess (lossless, SOP Instance UID kept); a missing program or a failed run raises.
    """
    uid_expected, command = TRANSFER_SYNTAXES[transfer_syntax]
    if command is None:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        return
    missing = dcmtk_missing([transfer_syntax])
    if missing:
        raise RuntimeError(f"writing {path} as {transfer_syntax}: dcmtk's {missing[0]} is not on PATH; install "
                           f"dcmtk (tools/system-packages.sh) or set cohort.phantom.dicom.transfer_syntax."
                           f"{transfer_syntax} to 0")
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        native = Path(tmp) / "native.dcm"
        pydicom.dcmwrite(native, ds, enforce_file_format=True)
        done = subprocess.run([*command, "--uid-never", str(native), str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed on {path} (exit {done.returncode}): {done.stderr.strip()}")
    written = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if written != uid_expected:
        raise RuntimeError(f"{command[0]} wrote {path} as {written}, expected {uid_expected}")
