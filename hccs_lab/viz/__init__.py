"""Plotly figures and printed tables built from results (calibrations, kernels, retraining runs); no state."""
