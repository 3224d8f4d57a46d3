# osteoloc: every table and figure of the landmark-prior study (and paper B's segmentation) from raw inputs.
# Default: the embedded phantom cohort (config.yaml). Other studies: --configfile experiments/<name>.yaml.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/apply.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
