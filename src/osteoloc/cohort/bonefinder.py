"""Run a configured BoneFinder command once per image of a manifest and write a manifest of its points;
sharded like the preprocessing (one `bonefinder_shard` job per `preprocess.shard_size` rows, then a gather).

The command is a template with `{image}` and `{points}` placeholders (shell-quoted when filled). A run
that fails or writes no points is logged and its row keeps pointing at the missing `.pts`, so that the
preprocessing stage excludes that radiograph with a reason instead of the study silently losing it.
"""

import logging
import os
import shlex
import subprocess
from pathlib import Path

import pandas as pd

from osteoloc.io.atomic import write_csv

log = logging.getLogger(__name__)


def _absolute(base, value):
    if not isinstance(value, str) or not value:
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p).resolve())


def run_bonefinder(manifest_path, command, out_manifest, timeout_s=600, rows=None, points_dir=None):
    """Run `command` for rows `rows` (positions, default all) of `manifest_path`; write `out_manifest`
    (those rows, their points in `points_dir`, default points/ beside it, named relative to the manifest's
    folder). Returns the number of failed runs."""
    manifest_path, out_manifest = Path(manifest_path), Path(out_manifest)
    if "{image}" not in command or "{points}" not in command:
        raise ValueError(f"cohort.bonefinder.command must contain {{image}} and {{points}}: {command!r}")
    table = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    missing = {"image_path", "subject", "visit", "cohort"} - set(table.columns)
    if missing:
        raise ValueError(f"{manifest_path}: manifest lacks columns {sorted(missing)}")
    if rows is not None:
        table = table.iloc[list(rows)]
    base = manifest_path.parent.resolve()
    points_dir = out_manifest.parent / "points" if points_dir is None else Path(points_dir)
    points_dir.mkdir(parents=True, exist_ok=True)
    out_rows, failures = [], 0
    for row in table.to_dict("records"):
        image = Path(_absolute(base, row["image_path"]))
        points = points_dir / f"{image.stem}.pts"
        points.unlink(missing_ok=True)
        cmd = command.format(image=shlex.quote(str(image)), points=shlex.quote(str(points)))
        try:
            done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout_s)
            ok = done.returncode == 0 and points.exists()
            detail = f"exit {done.returncode}: {done.stderr.strip()[-500:]}"
        except subprocess.TimeoutExpired:
            ok, detail = False, f"timed out after {timeout_s} s"
        if not ok:
            failures += 1
            log.warning("bonefinder failed on %s (%s); its points will be missing", image, detail)
        new = dict(row)
        new["image_path"] = str(image)
        new["points_path"] = os.path.relpath(points, out_manifest.parent)
        for col in ("manual_points_path",):
            if col in new:
                new[col] = _absolute(base, new[col])
        out_rows.append(new)
    columns = list(table.columns) + [c for c in ["points_path"] if c not in table.columns]
    write_csv(pd.DataFrame(out_rows, columns=columns), out_manifest)
    log.info("bonefinder: %d images, %d failed -> %s", len(out_rows), failures, out_manifest)
    return failures
