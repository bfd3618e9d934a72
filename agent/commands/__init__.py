"""One module per ``shoal`` subcommand: ``add_parser(subparsers)`` and ``main(args) -> int``."""
