"""``python -m llmsize``: the command-line interface."""

from llmsize.cli import main

main()
