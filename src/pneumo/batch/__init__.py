"""Batch prediction engines that spread ``pneumo predict`` over many processes or machines (above
:mod:`pneumo.inference`, below the CLI)."""
