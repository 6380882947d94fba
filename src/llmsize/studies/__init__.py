"""Studies that rerun the main job many times: calibration on models of known size,
and the comparison of hypotheses (``studies.compare``).

``studies.calibration`` holds the hold-outs (which sizes and prices each refit
withholds) and the metrics that score the refits; ``llmsize.calibration`` runs
them. Nothing here samples.
"""
