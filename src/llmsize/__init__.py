"""llmsize: infer how big a closed language model is from its prices and speeds."""

__version__ = "0.1.0"
