# Explain every trained model on its test split: Grad-CAM maps of the four targets, predictions and
# localisation metrics (docs/contracts.md section 5). Heavy: may run on a GPU node.


rule explain:
    input:
        study=results("preprocess", "study.h5"),
        split=results("splits", "seed{seed}.csv"),
        checkpoint=train_file("best.pt"),
        code=library_code("explain.py"),
    output:
        predictions=explain_file("predictions.csv"),
        maps=explain_file("maps.h5"),
        metrics=explain_file("metrics.csv"),
    params:
        batch_size=config["explain"]["batch_size"],
        pointing_tolerance_px=config["explain"]["pointing_tolerance_px"],
        device=config["study"]["device"],
    log:
        log_path("explain", "{model}", "seed{seed}.log"),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=1 if config["study"]["device"] == "cuda" else 0,
    script:
        "../../scripts/explain.py"
