"""Batch prediction engines that spread ``pneumo predict`` over many processes or machines (above
:mod:`pneumo.inference`, below the CLI)."""

# Ray reads this variable when it is imported: "0" keeps a single-machine Ray on 127.0.0.1 (see
# pneumo.batch.ray_engine); a process that joins a cluster needs Ray's default, "1". Named here so that the CLI
# can set it before anything imports Ray.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
