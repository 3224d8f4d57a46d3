"""The four osteophyte targets and the two sides, in the one order every array uses."""

TARGETS = ("osteo_fem_sup", "osteo_fem_inf", "osteo_acet_sup", "osteo_acet_inf")
SHORT_NAMES = {t: t.removeprefix("osteo_") for t in TARGETS}
SIDES = ("right", "left")
UNKNOWN = -1
