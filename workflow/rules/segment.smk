# Paper B (docs/segmentation.md): per site, landmark-centred patches -> U-Net -> test predictions and
# metrics; then Table 1 / Table 2, confusion matrices, overlays and the weak-vs-strong table.
# Sites are config (segment.sites); the split is that of the selection seed (the subjects of paper A).

SEGMENT = config["segment"]
SEGMENT_SITES = list(SEGMENT["sites"])
SEGMENT_SEED = int(config["study"]["selection_seed"])
# The weak-vs-strong table reads the paper A explain metrics of the selection seed (contracts.md section 5).
SEGMENT_CAM_MODELS = MODELS if SEGMENT["report"]["weak_vs_strong"] else []


wildcard_constraints:
    site="|".join(SEGMENT_SITES),


def segment_block(site, *keys):
    """The part of the segment config a rule uses: only that site, so editing one site reruns only it."""
    block = {k: SEGMENT[k] for k in keys}
    block["sites"] = {site: SEGMENT["sites"][site]}
    return as_json(block)


def segment_outputs(name):
    return expand(results("segment", "{site}", name), site=SEGMENT_SITES)


rule segment_patches:
    input:
        study=results("preprocess", "study.h5"),
        split=results("splits", f"seed{SEGMENT_SEED}.csv"),
        exclusions=results("preprocess", "exclusions.csv"),
        code=library_code("segment_patches.py"),
    output:
        patches=results("segment", "{site}", "patches.h5"),
    params:
        cfg=lambda w: segment_block(
            w.site, "patch_size", "dp_patch_size", "reference", "augment"
        ),
        seed=SEGMENT_SEED,
    log:
        log_path("segment", "{site}", "patches.log"),
    benchmark:
        results("benchmarks", "segment", "{site}", "patches.tsv")
    script:
        "../../scripts/segment_patches.py"


rule segment_train:
    input:
        patches=results("segment", "{site}", "patches.h5"),
        code=library_code("segment_train.py"),
    output:
        model=results("segment", "{site}", "model.pt"),
        history=results("segment", "{site}", "history.csv"),
    params:
        cfg=lambda w: segment_block(w.site, "model", "training"),
        seed=SEGMENT_SEED,
        device=config["study"]["device"],
        deterministic=config["study"]["deterministic"],
        # resumable checkpoint: not an output, so a killed job's cleanup keeps it
        last=results("segment", "{site}", "last.pt"),
    log:
        log_path("segment", "{site}", "train.log"),
    benchmark:
        results("benchmarks", "segment", "{site}", "train.tsv")
    threads: SEGMENT["training"]["threads"]
    resources:
        mem_mb=3000,
        runtime=30,
        gpu=1 if config["study"]["device"] == "cuda" else 0,
    script:
        "../../scripts/segment_train.py"


rule segment_evaluate:
    input:
        patches=results("segment", "{site}", "patches.h5"),
        model=results("segment", "{site}", "model.pt"),
        code=library_code("segment_evaluate.py"),
    output:
        predictions=results("segment", "{site}", "predictions.h5"),
        metrics=results("segment", "{site}", "metrics.csv"),
        summary=results("segment", "{site}", "summary.csv"),
    params:
        cfg=lambda w: segment_block(w.site, "training", "min_area"),
        device=config["study"]["device"],
    log:
        log_path("segment", "{site}", "evaluate.log"),
    benchmark:
        results("benchmarks", "segment", "{site}", "evaluate.tsv")
    threads: 1
    script:
        "../../scripts/segment_evaluate.py"


# Report outputs: id -> (folder, file stem, caption file, label); each has its .md/.tex or .pdf siblings.
SEGMENT_REPORT = {
    "table2": ("tables", "segmentation", "segment_table2", "Paper B Table 2"),
    "table1": (
        "tables",
        "segmentation_partitions",
        "segment_table1",
        "Paper B Table 1",
    ),
    "confusion": (
        "figures",
        "segmentation_confusion",
        "segment_confusion",
        "Paper B Fig. 3",
    ),
    "examples": (
        "figures",
        "segmentation_examples",
        "segment_examples",
        "Paper B Fig. 4",
    ),
}
if SEGMENT_CAM_MODELS:
    SEGMENT_REPORT["weak_vs_strong"] = (
        "tables",
        "segmentation_weak_vs_strong",
        "segment_weak_vs_strong",
        "Weak vs strong localisation",
    )


def segment_report_outputs():
    outputs = {}
    for kind, label_key in (("tables", "table"), ("figures", "figure")):
        entries = {k: v for k, v in SEGMENT_REPORT.items() if v[0] == kind}
        outputs |= report_outputs(
            kind,
            {k: {label_key: label} for k, (_, _, _, label) in entries.items()},
            "Segmentation",
            stems={k: (stem, caption) for k, (_, stem, caption, _) in entries.items()},
        )
    return outputs


rule segment_report:
    input:
        patches=segment_outputs("patches.h5"),
        predictions=segment_outputs("predictions.h5"),
        metrics=segment_outputs("metrics.csv"),
        summaries=segment_outputs("summary.csv"),
        cam_metrics=expand(
            results("explain", "{model}", f"seed{SEGMENT_SEED}", "metrics.csv"),
            model=SEGMENT_CAM_MODELS,
        ),
        code=library_code("segment_report.py"),
    output:
        **segment_report_outputs(),
    params:
        cfg=as_json({k: SEGMENT[k] for k in ("sites", "report")}),
        sites=SEGMENT_SITES,
        cam_models=SEGMENT_CAM_MODELS,
        decimals=config["report"]["tables"]["decimals"],
    log:
        log_path("segment", "report.log"),
    benchmark:
        results("benchmarks", "segment", "report.tsv")
    script:
        "../../scripts/segment_report.py"


localrules:
    segment_patches,
    segment_evaluate,
    segment_report,


if SEGMENT["enabled"]:
    ALL_TARGETS.extend(str(path) for path in segment_report_outputs().values())
