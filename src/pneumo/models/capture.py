"""Keep the outputs of chosen layers during a forward pass: the one forward-hook utility of pneumo.

The gate's pooled features (:mod:`pneumo.inference.network`), Grad-CAM's activation maps
(:mod:`pneumo.explain.gradcam`, the exported graph) and a model's intermediate blocks
(:meth:`pneumo.models.parts.ModelParts.forward_intermediates`) all read layers this way. Outputs land in
thread-local storage and only inside :meth:`LayerCapture.capturing`, so concurrent forwards from several threads
never see each other's, and a forward run by anyone else keeps nothing.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

Transform = Callable[[torch.Tensor], torch.Tensor]


class LayerCapture:
    """Hooks on ``layers``; ``with capture.capturing() as kept: model(x)`` leaves ``kept[i]`` = layer i's
    output, passed through ``transform`` inside the hook (before an in-place activation that follows the layer
    can change the map). ``remove()`` drops the hooks."""

    def __init__(self, layers: Sequence[nn.Module], transform: Transform | None = None) -> None:
        if not layers:
            raise ValueError("LayerCapture needs at least one layer")
        self.layers = list(layers)
        self._transform = transform
        self._local = threading.local()
        self._handles = [layer.register_forward_hook(lambda m, a, output, i=i: self._keep(i, output))
                         for i, layer in enumerate(self.layers)]

    def _keep(self, index: int, output: torch.Tensor) -> None:
        store = getattr(self._local, "store", None)
        if store is not None:  # only inside this capture's own block, in this thread
            store[index] = output if self._transform is None else self._transform(output)

    @contextmanager
    def capturing(self) -> Iterator[Captured]:
        captured = Captured(self.layers)
        self._local.store = captured.outputs
        try:
            yield captured
        finally:
            self._local.store = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class Captured:
    """The outputs one :meth:`LayerCapture.capturing` block kept, by the layer's index."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.layers = layers
        self.outputs: dict[int, torch.Tensor] = {}

    def __getitem__(self, index: int) -> torch.Tensor:
        if index not in self.outputs:
            raise RuntimeError(f"layer {index} ({type(self.layers[index]).__name__}) did not run in this forward "
                               "pass; is it a layer of the model that ran?")
        return self.outputs[index]

    def all(self) -> list[torch.Tensor]:
        """Every layer's output, in the order the layers were given."""
        return [self[i] for i in range(len(self.layers))]
