"""Model registry: every architecture is built by name with one-channel input and a dropout head."""

from pneumo.models.ensemble import ENSEMBLE, LogitEnsemble, MemberSpec, create_ensemble, gradcam_layers
from pneumo.models.registry import ARCHITECTURES, create_model, gradcam_layer, set_trainable_blocks
from pneumo.models.transfer import init_backbone_from_bundle

__all__ = ["ARCHITECTURES", "ENSEMBLE", "LogitEnsemble", "MemberSpec", "create_ensemble", "create_model",
           "gradcam_layer", "gradcam_layers", "init_backbone_from_bundle", "set_trainable_blocks"]

