"""Model registry: every architecture is built by name with one-channel input and a dropout head."""

from pneumo.models.registry import ARCHITECTURES, create_model, gradcam_layer, set_trainable_blocks

__all__ = ["ARCHITECTURES", "create_model", "gradcam_layer", "set_trainable_blocks"]
