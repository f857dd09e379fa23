"""One module per ``octguide`` subcommand, each exposing ``register(subparsers)``."""
