"""``python -m llmsize``: the command-line interface."""

from llmsize.cli import run

run()
