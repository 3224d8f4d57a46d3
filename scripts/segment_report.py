"""Rule segment_report: paper B's tables and figures, and the weak-vs-strong comparison."""

import json
import logging

from osteoloc.segment.stages import build_report

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
inp, out, params = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
try:
    sites = params.sites
    site_files = {s: {"patches": inp.patches[i], "predictions": inp.predictions[i], "metrics": inp.metrics[i],
                      "summary": inp.summaries[i]} for i, s in enumerate(sites)}
    cams = dict(zip(params.cam_models, inp.cam_metrics)) if params.cam_models else {}
    stems = {k: str(getattr(out, k)) for k in ("table2", "table1", "confusion", "examples")}
    if params.cam_models:
        stems["weak_vs_strong"] = str(out.weak_vs_strong)
    build_report(json.loads(params.cfg), site_files, cams, stems)
except Exception:
    logging.exception("segment_report failed")
    raise
