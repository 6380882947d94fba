"""Inference: estimators on fitted models (see ``../shared/DESIGN.md``'s layout)."""
