"""--init-from: a 3-class model starts from a binary bundle's backbone, with a new head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pneumo.models import create_model, init_backbone_from_bundle

from tests.inference.bundles import make_bundle


def test_backbone_is_copied_and_only_the_head_is_new(tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "binary", arch="mobilenet_v3_small", classes=2, seed=1)
    torch.manual_seed(2)
    model = create_model("mobilenet_v3_small", classes=3)
    head_before = model.classifier[3][1].weight.detach().clone()

    skipped = init_backbone_from_bundle(model, "mobilenet_v3_small", str(source))

    assert skipped == ["classifier.3.1.bias", "classifier.3.1.weight"]
    from safetensors.torch import load_file

    stored = load_file(str(source / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        if name in skipped:
            continue
        assert torch.equal(tensor, stored[name]), name
    assert torch.equal(model.classifier[3][1].weight, head_before)  # the 3-way head keeps its own init


def test_another_architecture_is_refused(tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "cnn", arch="simple_cnn")
    with pytest.raises(ValueError, match="bundle is simple_cnn, this run trains mobilenet_v3_small"):
        init_backbone_from_bundle(create_model("mobilenet_v3_small"), "mobilenet_v3_small", str(source))
