"""``python -m promptlab``."""

from promptlab.cli import run

run()
