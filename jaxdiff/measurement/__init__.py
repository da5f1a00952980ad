"""Measurement: the gender classifier, its calibration, the evaluation of a trained run and its report."""
