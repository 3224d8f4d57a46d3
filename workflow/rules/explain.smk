# Explain every trained model (the paper's two and every study arm) on its test split: Grad-CAM maps of the
# four targets in the hip crop's frame, predictions and localisation metrics (docs/contracts.md section 5).
# With the phantom's counterfactual twins (cohort.phantom.cue.twins) also the predictions on the twin study
# (the shortcut test). Heavy: may run on a GPU node.
TWINS = phantom_twins()  # common.smk
TWIN_STUDY_H5 = results("preprocess", "study_twin.h5")


def explain_inputs(wildcards):
    inputs = {
        "study": results("preprocess", "study.h5"),
        "split": results("splits", f"seed{wildcards.seed}.csv"),
        "checkpoint": train_file("best.pt", wildcards.model, wildcards.seed),
        "code": library_code("explain.py"),
    }
    if TWINS:
        inputs["twin"] = TWIN_STUDY_H5
    return inputs


rule explain:
    input:
        unpack(explain_inputs),
    output:
        **({"twin_predictions": explain_file("twin_predictions.csv")} if TWINS else {}),
        predictions=explain_file("predictions.csv"),
        maps=explain_file("maps.h5"),
        metrics=explain_file("metrics.csv"),
    params:
        batch_size=config["explain"]["batch_size"],
        pointing_tolerance_mm=config["explain"]["pointing_tolerance_mm"],
        peak=config["explain"]["peak"],
        control_sigma_mm=config["explain"]["control_sigma_mm"],
        lesion_vs_landmark_min_mm=config["explain"]["lesion_vs_landmark_min_mm"],
        device=config["study"]["device"],
    log:
        log_path("explain", "{model}", "seed{seed}.log"),
    benchmark:
        explain_file("benchmark.tsv")  # the job's wall time: rule throughput's explain rate
    threads: config["explain"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=1 if config["study"]["device"] == "cuda" else 0,
    script:
        "../../scripts/explain.py"


# Localisation by intervention (phantom only, off by default: explain.interventions.enabled): each run's
# maps on its test radiographs redrawn with each lesion removed or moved (docs/evaluation.md).
if interventions_on():  # common.smk
    INTERVENTIONS = config["explain"]["interventions"]
    INTERVENTIONS_CSV = explain_file("interventions.csv")

    # rendered once per split (the renders do not depend on the model), read by every run of that seed
    rule intervention_crops:
        input:
            study=results("preprocess", "study.h5"),
            split=results("splits", "seed{seed}.csv"),
            code=library_code("intervention_crops.py"),
        output:
            crops=results("explain", "interventions", "seed{seed}.h5"),
        params:
            phantom=as_json(config["cohort"]["phantom"]),
            shifts_mm=INTERVENTIONS["shifts_mm"],
            radiographs=INTERVENTIONS["radiographs"],
            directions=INTERVENTIONS["directions"],
        log:
            log_path("explain", "interventions", "seed{seed}.log"),
        localrule: True
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        script:
            "../../scripts/intervention_crops.py"

    rule explain_interventions:
        input:
            study=results("preprocess", "study.h5"),
            # one test set for every seed (train.split.test_seed): the selection seed's crops serve all
            crops=lambda wildcards: results(
                "explain",
                "interventions",
                "seed{}.h5".format(
                    wildcards.seed
                    if config["train"]["split"]["test_seed"] is None
                    else config["study"]["selection_seed"]
                ),
            ),
            checkpoint=train_file("best.pt", "{model}", "{seed}"),
            code=library_code("explain_interventions.py"),
        output:
            effects=INTERVENTIONS_CSV,
        params:
            groups=as_json(config["preprocess"]["groups"]),
            peak=config["explain"]["peak"],
            device=config["study"]["device"],
        log:
            log_path("explain", "{model}", "seed{seed}_interventions.log"),
        threads: config["explain"]["threads"]
        resources:
            mem_mb=4000,
            runtime=30,
            gpu=1 if config["study"]["device"] == "cuda" else 0,
        script:
            "../../scripts/explain_interventions.py"


# The paper's two models are explained for the report; the arms' runs are final outputs of their own.
ALL_TARGETS.extend(
    explain_file(name, model, seed)
    for model in ARMS
    for seed in SEEDS
    for name in ("predictions.csv", "metrics.csv", "maps.h5")
)
