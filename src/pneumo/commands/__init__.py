"""CLI subcommands: each module has ``register(subparsers)`` which sets ``func`` on its parser."""
