"""Studies that rerun the main job many times: calibration on models of known size,
and the comparison of hypotheses (``studies.compare``).

``studies.calibration`` holds the hold-outs (which sizes and prices each refit
withholds), the refits, baselines and SBC that run on them, the metrics that score
them and the calibration report; ``studies.compare`` fits each hypothesis and weighs
their evidence.
"""
