"""Resumable checkpoints (`last.pt`) of the ResNet's and the U-Net's training loops: the one reader, in a
module of its own so that paper B's jobs do not depend on paper A's training code."""

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def load_resumable(path, identity):
    """The checkpoint at `path` if it belongs to this very run (its `identity` entry equals `identity`: same
    settings and data), else None (no file, an unreadable one, or another run's)."""
    if path is None or not Path(path).exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a checkpoint from an older version or a damaged file: start afresh
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None
    if checkpoint.get("identity") != identity:
        log.info("checkpoint %s belongs to other settings or data: starting afresh", path)
        return None
    return checkpoint
