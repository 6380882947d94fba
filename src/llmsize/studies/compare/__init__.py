"""Comparison of hypotheses on the same data (``llmsize compare``, :func:`llmsize.compare`).

- :mod:`.runner`: the fits of every hypothesis, the evidence between them (Bayes
  factors by reweighting, PSIS-LOO), the public claims' probabilities, and the
  tables, figures and Markdown of ``reports/compare``.
"""
