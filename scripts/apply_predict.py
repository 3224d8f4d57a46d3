"""Rule apply_predict: one trained model of the finished study on every hip of the new cohort (predictions,
Grad-CAM maps, metrics)."""

from osteoloc.apply.stages import apply_run
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: apply_run(  # noqa: F821
    smk.input.study, smk.input.split, smk.input.checkpoint, predictions_path=smk.output.predictions,
    maps_path=smk.output.maps, metrics_path=smk.output.metrics, batch_size=smk.params.batch_size,
    pointing_tolerance_mm=smk.params.pointing_tolerance_mm, peak=smk.params.peak,
    control_sigma_mm=smk.params.control_sigma_mm, device=smk.params.device))
