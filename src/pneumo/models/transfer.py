"""Start a model from another pneumo bundle: transfer between tasks of the same architecture.

The 3-class default starts from the binary default's backbone; only the head (whose shape differs) is new.
"""
from __future__ import annotations

import logging

from torch import nn

from pneumo.bundle import load_state, read_meta

log = logging.getLogger(__name__)


def init_backbone_from_bundle(model: nn.Module, arch: str, ref: str) -> list[str]:
    """Copy every tensor of bundle ``ref`` whose name and shape match into ``model``; return the skipped names.

    Refuses a bundle of another architecture: a partial match there would silently train a mostly
    random network.
    """
    directory, meta = read_meta(ref)
    if meta.arch != arch:
        raise ValueError(f"--init-from {ref}: bundle is {meta.arch}, this run trains {arch}")
    source = load_state(directory)
    target = model.state_dict()
    usable = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    skipped = sorted(set(target) - set(usable))
    model.load_state_dict(usable, strict=False)
    log.info("initialised %d of %d tensors from %s (new: %s)", len(usable), len(target), directory,
             ", ".join(skipped) or "none")
    return skipped
