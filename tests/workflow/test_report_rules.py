"""The explain and report rules through snakemake on synthetic upstream files (tests/unit/test_tables_figures.py)."""

import json

from helpers import REPORT_SEEDS as SEEDS
from helpers import write_upstream
from workflow_copy import REPO, snakemake

from osteoloc.names import FIGURE_IDS, TABLE_IDS


def test_workflow_report_rules(tmp_path):
    """explain + report rules through Snakemake on synthetic upstream files; --report writes the HTML.

    A Snakefile with only this stage's rule files (plus common.smk) treats the upstream contract files as
    sources, so neither the run nor the report needs the other stages' outputs."""
    results = tmp_path / "results"
    write_upstream(results)
    config = {"study": {"name": "tiny", "seeds": list(SEEDS), "selection_seed": 0, "results": str(results)},
              "explain": {"batch_size": 8}, "report": {"figures": {"width_in": 5.0}}}
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    rules = REPO / "workflow" / "rules"
    (tmp_path / "Snakefile").write_text(
        f'configfile: "{tmp_path / "config.yaml"}"\n'
        + "".join(f'include: "{rules / name}"\n' for name in ("common.smk", "explain.smk", "report.smk"))
        + "rule all:\n    input: ALL_TARGETS,\n    default_target: True\n")
    snakemake(tmp_path, "--cores", "2")  # the Snakefile above, in its own folder
    for table_id in TABLE_IDS:
        assert (results / "report" / "tables" / f"{table_id}.tex").is_file()
    for figure_id in FIGURE_IDS:
        assert (results / "report" / "figures" / f"{figure_id}.pdf").is_file()
    summary = (results / "report" / "summary.md").read_text()
    assert "no landmarks" in summary
    html = tmp_path / "report.html"
    snakemake(tmp_path, "--report", str(html))
    text = html.read_text(errors="replace")
    assert "case studies" in text and "Seed-level input" in text  # captions and labels reached the report
