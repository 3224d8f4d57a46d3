"""Rule segment_report: paper B's tables and figures, and the weak-vs-strong comparison."""

import json

from osteoloc.runner import run_script
from osteoloc.segment.stages import build_report


def main(smk):
    inp, out, params = smk.input, smk.output, smk.params
    site_files = {s: {"patches": inp.patches[i], "predictions": inp.predictions[i], "metrics": inp.metrics[i],
                      "summary": inp.summaries[i]} for i, s in enumerate(params.sites)}
    cams = dict(zip(params.cam_models, inp.cam_metrics)) if params.cam_models else {}
    stems = {k: str(getattr(out, k)) for k in ("table2", "table1", "confusion", "examples")}
    if params.cam_models:
        stems["weak_vs_strong"] = str(out.weak_vs_strong)
    build_report(json.loads(params.cfg), site_files, cams, stems, params.decimals)


run_script(snakemake, main)  # noqa: F821
