"""Rule apply_gallery: the static HTML gallery of every hip and target, with its pictures."""

from osteoloc.apply.stages import apply_gallery
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: apply_gallery(  # noqa: F821
    smk.params.runs, smk.input.study, smk.input.ensemble, smk.input.maps, smk.output.gallery,
    title=smk.params.title, note=smk.params.note, batch_size=smk.params.batch_size,
    full_scale=smk.params.full_scale, map_alpha=smk.params.map_alpha))
