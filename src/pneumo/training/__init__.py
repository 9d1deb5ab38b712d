"""Training: one loop, configured by RunConfig, writing best/ and last/ bundles every epoch."""

from pneumo.training.trainer import fit

__all__ = ["fit"]
