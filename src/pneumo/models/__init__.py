"""Model registry: every architecture is built by name with one-channel input and a dropout head, and read
through one interface (:mod:`pneumo.models.parts`): features, head, named blocks."""

from pneumo.models.capture import LayerCapture
from pneumo.models.logit_ensemble import ENSEMBLE, LogitEnsemble, MemberSpec, create_ensemble
from pneumo.models.parts import Block, ModelParts, gradcam_layers, parts_of, set_trainable_blocks
from pneumo.models.registry import ARCHITECTURES, create_model
from pneumo.models.transfer import init_backbone_from_bundle

__all__ = ["ARCHITECTURES", "ENSEMBLE", "Block", "LayerCapture", "LogitEnsemble", "MemberSpec", "ModelParts",
           "create_ensemble", "create_model", "gradcam_layers", "init_backbone_from_bundle", "parts_of",
           "set_trainable_blocks"]
