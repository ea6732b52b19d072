"""``python -m minircnn`` is the ``minircnn`` command."""

from minircnn.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
