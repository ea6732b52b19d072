"""The ``minircnn`` command: one ``add_<cmd>`` / ``run_<cmd>`` pair per subcommand."""

from minircnn.cli.main import main

__all__ = ["main"]
