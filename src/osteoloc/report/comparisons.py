"""Which arm each study arm is compared with (config `report.comparisons`): light, so that the workflow
checks the setting while it parses, before any job runs."""

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
