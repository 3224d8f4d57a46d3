"""The one runner of every rule script (scripts/*.py): the rule's log receives the library's logging and
any uncaught exception with its traceback, torch gets the rule's thread count, then one library call runs.

    from osteoloc.runner import run_script
    run_script(snakemake, lambda smk: some_stage(smk.input.x, smk.output.y, ...))
"""

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_script(smk, main):
    """Set up logging to `smk.log[0]` and threads from `smk.threads`, then call `main(smk)`.

    An exception is logged with its traceback (so a failed job's log says why) and raised again, so
    snakemake marks the job failed and removes its outputs. Returns what `main` returns.
    """
    logging.basicConfig(filename=smk.log[0] if smk.log else None, level=logging.INFO, format=LOG_FORMAT,
                        force=True)
    # Only a script whose library uses torch pays for importing it.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, int(smk.threads)))
    rule = getattr(smk, "rule", "script")
    try:
        return main(smk)
    except Exception:
        logging.getLogger(__name__).exception("rule %s failed", rule)
        raise
