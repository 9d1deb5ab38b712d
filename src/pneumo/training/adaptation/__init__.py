"""``pneumo adapt``: a site's version of a bundle, recalibrated (and fine-tuned when that ranks better) on the
site's own labelled X-rays, with cross-validated local figures."""

from pneumo.training.adaptation.adapt import AdaptResult, adapt
from pneumo.training.adaptation.config import AdaptConfig, FinetuneConfig
from pneumo.training.adaptation.local import TooFewLabels

__all__ = ["AdaptConfig", "AdaptResult", "FinetuneConfig", "TooFewLabels", "adapt"]
