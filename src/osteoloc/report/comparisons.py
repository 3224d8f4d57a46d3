"""Which arm each study arm is compared with (config `report.comparisons`), and which primary comparisons the
study's design adds: light, so that the workflow checks the settings while it parses, before any job runs."""

from osteoloc.names import REFERENCE_ARM


def comparison_arms(arms, reference=REFERENCE_ARM, comparisons=None):
    """{arm: the arm it is compared with}: `reference` unless `comparisons` ({arm: other arm}, config
    `report.comparisons`) names another; the reference arm itself is compared with nothing. Raises
    ValueError for an unknown arm, an arm compared with itself, or a comparison for the reference arm."""
    comparisons = dict(comparisons or {})
    unknown = sorted({a for pair in comparisons.items() for a in pair} - set(arms))
    if unknown:
        raise ValueError(f"report.comparisons: unknown arm(s) {unknown}; the study's arms are {list(arms)}")
    same = sorted(a for a, b in comparisons.items() if a == b)
    if same:
        raise ValueError(f"report.comparisons: {same} compared with itself")
    if reference in comparisons:
        raise ValueError(f"report.comparisons: {reference!r} is the reference arm every other arm is compared "
                         "with; it is compared with nothing")
    return {arm: comparisons.get(arm, reference) for arm in arms if arm != reference}


# The primary metric a phantom's lesion placement design adds to report.statistics.primary_metrics: with
# lesions placed away from their landmarks (cohort.phantom.lesion_placement.design "offset") the question
# "does the map show the lesion or the landmark?" has an answer, so its endpoint is pre-specified.
DESIGN_PRIMARIES = {"offset": ("lesion_vs_landmark",)}


def design_primaries(lesion_placement):
    """The primary metrics the lesion placement design (None: not a phantom) adds, in order."""
    return DESIGN_PRIMARIES.get(lesion_placement, ())
