"""A cohort manifest from folders (the `osteoloc manifest` command, docs/contracts.md section 1): every DICOM
under one folder paired with its BoneFinder `.pts` under another, subject and visit read from the file's
path (named groups of a regular expression) or its header (PatientID, StudyDate).

Pairing is by name, as BoneFinder names its output after the image: `<name>.pts` (160 points) or the per-hip
`<name>_L.pts` / `<name>_R.pts` / `<name>_RasL.pts` (io.pts.resolve_hip_files), case-insensitively, first
by the path below each folder, else by the bare name when exactly one DICOM has it. A DICOM's name is taken
whole unless it ends in `.dcm` / `.dicom` (a PACS export names files by their UID, whose dots are no
suffix). Symbolic links to folders are followed (each real folder once, so a link loop ends). Everything not
paired is listed with the reason in `<manifest stem>.unpaired.csv` (kind `dicom`, `pts`, `other`,
`dicomdir` for a DICOM media index, `link` for a broken or looping symbolic link, or `one_hip` for a
radiograph paired with one hip's file only). Only the identifiers asked for are written: no other header
field is read.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pydicom

from osteoloc.io.atomic import write_csv
from osteoloc.io.manifest import REQUIRED_COLUMNS
from osteoloc.io.pts import PER_HIP_SUFFIXES

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
PREAMBLE_END = 132  # a DICOM file's 128-byte preamble, then b"DICM"
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: a DICOMDIR's SOP class
SUBJECT_FROM = ("filename", "PatientID")
VISIT_FROM = ("filename", "StudyDate")
UNPAIRED_COLUMNS = ("path", "kind", "reason")
# per-hip suffix (lower case) -> side, longest first so that _rasl is not read as _l
HIP_SUFFIXES = sorted(((s, side) for side, suffixes in PER_HIP_SUFFIXES.items() for s in suffixes),
                      key=lambda item: -len(item[0]))


@dataclass
class _Radiograph:
    path: Path
    key: str  # path below the DICOM folder, no suffix, lower case
    both: list = field(default_factory=list)  # 160-point files
    hips: dict = field(default_factory=dict)  # side -> [per-hip files]


def unpaired_path(manifest_path):
    """Where the list of what could not be paired goes: `<stem>.unpaired.csv` beside the manifest."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.stem}.unpaired.csv")


def _key(path, folder, suffixes):
    """The path below `folder`, lower case, without its suffix when it is one of `suffixes` (only those: a
    UID-named file `1.2.826.0.1.3680043.8.498.10101` has no suffix)."""
    relative = path.relative_to(folder).as_posix().lower()
    suffix = path.suffix.lower()
    return relative[: -len(suffix)] if suffix in suffixes else relative


def _is_dicom(path):
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as file:
        return file.read(PREAMBLE_END)[128:] == b"DICM"


def _is_dicomdir(path):
    """True for a DICOMDIR (the index of a DICOM media folder, no image): by name, or by its SOP class."""
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        meta = pydicom.filereader.read_file_meta_info(path)  # the file meta only, not the data set
    except Exception:  # noqa: BLE001 - not readable as DICOM: not a DICOMDIR either
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_DIRECTORY


def _files(folder, unpaired):
    """Every file under `folder` (sorted; hidden ones left out), symbolic links to folders followed with each
    real folder visited once; broken and looping links go to `unpaired` (kind `link`)."""
    folder = Path(folder)
    files, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back to a folder already walked: a loop, or a second way in
            unpaired.append((root, "link", f"symbolic link to {real}, a folder already listed: not followed again"))
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            path = Path(root) / name
            if name.startswith("."):
                continue
            if path.is_symlink() and not path.exists():
                unpaired.append((str(path), "link", f"broken symbolic link (to {os.readlink(path)}, which does not "
                                                    "exist)"))
            elif path.is_file():
                files.append(path)
    return sorted(files)


def compile_patterns(patterns, subject_from, visit_from):
    """The --id-pattern expressions compiled; raises ValueError when one lacks a group the choice of
    --subject-from / --visit-from needs (`subject`, `visit`)."""
    needed = [name for name, source in (("subject", subject_from), ("visit", visit_from)) if source == "filename"]
    if needed and not patterns:
        raise ValueError(f"--id-pattern is needed to read {' and '.join(needed)} from file names")
    compiled = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"--id-pattern {pattern!r} is not a regular expression: {err}") from None
        missing = [name for name in needed if name not in regex.groupindex]
        if missing:
            raise ValueError(f"--id-pattern {pattern!r} has no named group {missing} (write (?P<{missing[0]}>...))")
        compiled.append(regex)
    return compiled


def _format_subject(subject_format, groups):
    try:
        return subject_format.format(**groups)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"--subject-format {subject_format!r} needs a group the pattern lacks or is not a "
                         f"format string ({type(err).__name__}: {err}); groups: {sorted(groups)}") from None


def _header_ids(path, subject_from, visit_from):
    """{"subject": PatientID, "visit": StudyDate} as asked for, read without pixel data; only these tags."""
    tags = [source for source in (subject_from, visit_from) if source != "filename"]
    if not tags:
        return {}
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    ids = {}
    for name, source in (("subject", subject_from), ("visit", visit_from)):
        if source != "filename":
            ids[name] = str(ds.get(source, "") or "").strip()
    return ids


def _pair_points(radiographs, pts_dir, unpaired):
    """Attach every .pts under `pts_dir` to the radiograph named like it; strays go to `unpaired`."""
    by_key = {r.key: r for r in radiographs}
    by_name = {}
    for r in radiographs:
        by_name.setdefault(r.key.rsplit("/", 1)[-1], []).append(r)

    def find(key):
        if key in by_key:
            return by_key[key], None
        named = by_name.get(key.rsplit("/", 1)[-1], [])
        if len(named) > 1:
            return None, f"{len(named)} DICOMs are named like it: {', '.join(str(r.path) for r in named)}"
        return (named[0], None) if named else (None, None)

    for path in _files(pts_dir, unpaired):
        if path.suffix.lower() != ".pts":
            continue
        key = _key(path, pts_dir, (".pts",))
        radiograph, problem = find(key)
        if radiograph is not None:
            radiograph.both.append(path)
            continue
        for suffix, side in HIP_SUFFIXES:
            if key.endswith(suffix):
                radiograph, problem = find(key[: -len(suffix)])
                if radiograph is not None:
                    radiograph.hips.setdefault(side, []).append(path)
                    break
        if radiograph is None:
            unpaired.append((str(path), "pts", problem or "no DICOM named like it under the DICOM folder"))


def _points_path(radiograph, unpaired):
    """The manifest's points_path of a radiograph (a .pts file, or the stem of its per-hip files), or None
    with the reason in `unpaired`."""
    if len(radiograph.both) > 1:
        unpaired.append((str(radiograph.path), "dicom",
                         f"{len(radiograph.both)} .pts files named like it: {', '.join(map(str, radiograph.both))}"))
        return None
    if radiograph.both:
        for files in radiograph.hips.values():
            unpaired.extend((str(p), "pts", f"not used: the 160-point file {radiograph.both[0]} is") for p in files)
        return radiograph.both[0]
    if not radiograph.hips:
        unpaired.append((str(radiograph.path), "dicom", "no .pts file named like it under the points folder"))
        return None
    files = [p for paths in radiograph.hips.values() for p in paths]
    folders = {p.parent for p in files}
    if len(folders) > 1 or any(len(paths) > 1 for paths in radiograph.hips.values()):
        unpaired.append((str(radiograph.path), "dicom",
                         f"per-hip .pts files in several places or spellings: {', '.join(map(str, files))}"))
        return None
    stem = files[0].name[: len(files[0].name) - len(".pts")]
    for suffix, _ in HIP_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for side in PER_HIP_SUFFIXES:
        if side not in radiograph.hips:
            spellings = " or ".join(s.upper().replace("RASL", "RasL") for s in PER_HIP_SUFFIXES[side])
            unpaired.append((str(radiograph.path), "one_hip",
                             f"paired, but no per-hip .pts for the {side} hip ({spellings}): that hip will be excluded"))
    return folders.pop() / stem


def build_manifest(dicom_dir, pts_dir, out_path, id_patterns=(), subject_from="filename", visit_from="filename",
                   cohort="", subject_format="{subject}"):
    """Pair the DICOMs under `dicom_dir` with the .pts under `pts_dir` and write the manifest (REQUIRED_COLUMNS,
    paths relative to its folder) to `out_path` and what could not be paired (UNPAIRED_COLUMNS) beside it
    (`unpaired_path`). Subject and visit come from the first of `id_patterns` that matches a DICOM's path
    below `dicom_dir` (named groups `subject`, `visit` and optionally `cohort`) or from its header
    (`subject_from` PatientID, `visit_from` StudyDate); `cohort` fills the cohort column where no group
    does; `subject_format` builds the subject from the groups (and cohort), e.g. "{cohort}-{subject}" when
    the labels spell CHECK-00123 and the files 00123_T00_APO.dcm. A second radiograph of a subject and visit is listed, not written. Returns (manifest, unpaired)."""
    if subject_from not in SUBJECT_FROM or visit_from not in VISIT_FROM:
        raise ValueError(f"subject comes from one of {SUBJECT_FROM}, visit from one of {VISIT_FROM}")
    dicom_dir, pts_dir, out_path = Path(dicom_dir), Path(pts_dir), Path(out_path)
    for name, folder in (("DICOM", dicom_dir), ("points", pts_dir)):
        if not folder.is_dir():
            raise ValueError(f"{folder}: the {name} folder does not exist")
    patterns = compile_patterns(list(id_patterns), subject_from, visit_from)
    unpaired, radiographs = [], []
    for path in _files(dicom_dir, unpaired if dicom_dir != pts_dir else []):
        if path.suffix.lower() == ".pts":
            continue  # DICOMs and points may share one folder
        if _is_dicom(path) and _is_dicomdir(path):
            unpaired.append((str(path), "dicomdir", "a DICOMDIR: the index of a DICOM media folder, no radiograph "
                                                    "(the files it lists are paired on their own)"))
        elif _is_dicom(path):
            radiographs.append(_Radiograph(path, _key(path, dicom_dir, DICOM_SUFFIXES)))
        else:
            unpaired.append((str(path), "other", "not a DICOM file (no .dcm suffix, no DICM preamble)"))
    _pair_points(radiographs, pts_dir, unpaired)
    rows, first = [], {}
    base = out_path.absolute().parent
    for radiograph in radiographs:
        relative = radiograph.path.relative_to(dicom_dir).as_posix()
        match = next((m for m in (p.search(relative) for p in patterns) if m), None)
        if match is None and patterns and "filename" in (subject_from, visit_from):
            unpaired.append((str(radiograph.path), "dicom", "its path matches no --id-pattern"))
            continue
        groups = {"cohort": cohort} | {k: v for k, v in (match.groupdict() if match else {}).items() if v is not None}
        if subject_from == "filename":
            groups["subject"] = _format_subject(subject_format, groups)
        try:
            ids = _header_ids(radiograph.path, subject_from, visit_from)
        except Exception as err:  # noqa: BLE001 - a damaged header can fail in many ways; all mean "unreadable"
            unpaired.append((str(radiograph.path), "dicom", f"header unreadable ({type(err).__name__}: {err})"))
            continue
        subject, visit = ids.get("subject", groups.get("subject", "")), ids.get("visit", groups.get("visit", ""))
        empty = [n for n, v in (("subject", subject), ("visit", visit)) if not v]
        if empty:
            unpaired.append((str(radiograph.path), "dicom", f"no {' and '.join(empty)} found"))
            continue
        points = _points_path(radiograph, unpaired)
        if points is None:
            continue
        hip = (subject.strip().upper(), visit.strip().upper())
        if hip in first:
            unpaired.append((str(radiograph.path), "dicom",
                             f"a second radiograph of subject {subject} visit {visit} ({first[hip]} is used)"))
            continue
        first[hip] = radiograph.path
        rows.append({"image_path": os.path.relpath(radiograph.path.absolute(), base), "subject": subject,
                     "visit": visit, "cohort": groups["cohort"],
                     "points_path": os.path.relpath(Path(points).absolute(), base)})
    manifest = pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS))
    unpaired_table = pd.DataFrame(unpaired, columns=list(UNPAIRED_COLUMNS))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(manifest, out_path)
    write_csv(unpaired_table, unpaired_path(out_path))
    log.info("%d radiographs paired -> %s; %d unpaired files listed in %s", len(manifest), out_path,
             len(unpaired_table), unpaired_path(out_path))
    return manifest, unpaired_table
