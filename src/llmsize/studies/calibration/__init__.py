"""Calibration on models of known size: hold-outs, metrics and the report's tables.

- :mod:`.holdouts`: which models' sizes (and which of their prices) each refit
  withholds: same-size sibling families held out together, and lab ladders (a lab's
  own-API prices with one of its sizes kept), each assigned to the split that may be
  used to choose priors or to the split that scores them;
- :mod:`.metrics`: coverage with Clopper–Pearson intervals, errors, widths, per
  method and per class of held-out model, and the targets they are judged by;
- :mod:`.refits`: each hold-out refitted with its sizes withheld, and scored;
- :mod:`.baselines`: the hand-made estimates scored beside llmsize;
- :mod:`.sbc`: simulation-based calibration of the sampler and model;
- :mod:`.store`: the on-disk store of refits and the Dask queue that fills it;
- :mod:`.report`: the calibration folder: tables, figures and README;
- :mod:`.runner`: ``llmsize calibrate`` end to end.
"""
