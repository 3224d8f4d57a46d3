"""Rule report_summary: the study's key numbers and its exclusions in Markdown."""

from osteoloc.runner import run_script
from osteoloc.report.stages import SUMMARY_TABLES, report_summary

run_script(snakemake, lambda smk: report_summary(  # noqa: F821
    smk.params.study_name, smk.params.seeds, smk.params.runs,
    table_paths={t: smk.input[t] for t in SUMMARY_TABLES},
    exclusions_path=smk.input.exclusions, study_path=smk.input.study, metrics_paths=smk.input.metrics,
    out_path=smk.output.summary))
