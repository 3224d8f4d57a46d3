"""Errors in the user's input files that stop the run instead of excluding a hip: the message names the file
and the line, and the user fixes the file."""


class ExpertReferenceError(ValueError):
    """A row of the references CSV that cannot be used; the message names the file and the line."""


class InputCheckFailed(ValueError):
    """The inputs would fail the whole run (the pre-flight checks `check_labels` and `check_inputs`): nothing
    should start."""
