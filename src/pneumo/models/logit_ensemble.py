"""Several trained networks read as one: their outputs averaged in logit space.

Averaging logits (not probabilities) keeps one model with one set of logits, so temperature, threshold, the
gate's feature hooks, Grad-CAM and the ONNX export treat the ensemble as they treat a single network (each member's
blocks and Grad-CAM layer: :func:`pneumo.models.parts.parts_of`). The members see the same preprocessed input, so
they share the bundle's ``preprocess``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pneumo.models.registry import create_model

ENSEMBLE = "ensemble"  # the ``arch`` of an ensemble bundle; its members' architectures are in ``members``


@dataclass(frozen=True)
class MemberSpec:
    """What builds one member: its architecture and head dropout (as stored in the bundle's ``members``)."""

    arch: str
    dropout: float = 0.3


class LogitEnsemble(nn.Module):
    """``forward(x)`` = the mean of the members' logits. ``members[i]`` is member i's network, ``archs[i]``
    its architecture name."""

    def __init__(self, members: list[nn.Module], archs: list[str]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        if len(archs) != len(members):
            raise ValueError(f"{len(members)} members but {len(archs)} architecture names")
        self.members = nn.ModuleList(members)
        self.archs = list(archs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def create_ensemble(specs: list[MemberSpec], *, classes: int = 2) -> LogitEnsemble:
    """Untrained members of the given architectures (weights come from the bundle)."""
    return LogitEnsemble([create_model(s.arch, classes=classes, dropout=s.dropout) for s in specs],
                         [s.arch for s in specs])

