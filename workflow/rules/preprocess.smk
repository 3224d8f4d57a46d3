# Preprocessing: the cohort -> one study HDF5 (crops, labels, landmarks) + the exclusions table; Figure 1.
# Inputs come from cohort.smk's input functions (phantom rule outputs or the configured real files).


def preprocess_inputs(wildcards):
    """The cohort files the preprocessing reads, by `cohort.source`."""
    if config["cohort"].get("source") == "group_hdf5":
        return {
            "group_hdf5": config["cohort"]["group_hdf5"],
            "points_dir": config["cohort"]["points_dir"],
            "labels": cohort_labels(),
        }
    return {
        "manifest": cohort_manifest(),
        "labels": cohort_labels(),
        "truth": cohort_truth(),
    }


rule preprocess:
    input:
        unpack(preprocess_inputs),
        code=library_code("preprocess.py"),
    output:
        study=results("preprocess", "study.h5"),
        exclusions=report(
            results("preprocess", "exclusions.csv"),
            caption="../report/preprocess_exclusions.rst",
            category="Preprocessing",
            labels={"table": "exclusions"},
        ),
    params:
        source=config["cohort"].get("source", "phantom"),
        settings=as_json(config["preprocess"]),
    log:
        log_path("preprocess.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    script:
        "../../scripts/preprocess.py"


rule figure_landmarks:
    input:
        study=rules.preprocess.output.study,
        code=library_code("figure_landmarks.py"),
    output:
        png=report(
            results("report", "figures", "figure1.png"),
            caption="../report/figure1.rst",
            category="Figures",
            labels={"figure": "1: landmarks and target groups"},
        ),
        pdf=results("report", "figures", "figure1.pdf"),
    params:
        rows=as_json(config["preprocess"]["figure_rows"]),
    log:
        log_path("figure_landmarks.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/figure_landmarks.py"


ALL_TARGETS.extend(
    [
        rules.preprocess.output.study,
        rules.preprocess.output.exclusions,
        rules.figure_landmarks.output.png,
        rules.figure_landmarks.output.pdf,
    ]
)
