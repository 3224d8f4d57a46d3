"""Rule explain: predictions, Grad-CAM maps and localisation metrics of one model on its test split (and its
predictions on the counterfactual twin study, when the rule names one)."""

from osteoloc.explain.stages import explain_run
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: explain_run(  # noqa: F821
    smk.input.study, smk.input.split, smk.input.checkpoint, predictions_path=smk.output.predictions,
    maps_path=smk.output.maps, metrics_path=smk.output.metrics, batch_size=smk.params.batch_size,
    pointing_tolerance_mm=smk.params.pointing_tolerance_mm, peak=smk.params.peak,
    control_sigma_mm=smk.params.control_sigma_mm, min_separation_mm=smk.params.lesion_vs_landmark_min_mm,
    device=smk.params.device,
    twin_study_path=smk.input.get("twin"), twin_predictions_path=smk.output.get("twin_predictions")))
