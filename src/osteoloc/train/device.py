"""The one device picker of every stage (training, explain, paper B's U-Nets)."""

import torch


def pick_device(name="auto"):
    """`auto` -> CUDA when present, else the CPU; `cuda` on a machine without CUDA is an error (a run that
    asked for a GPU must not quietly take hours on a CPU); anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return torch.device(name)
