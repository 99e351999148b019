"""Per-head calibration of HCCS: the objective, the exact grid search, the gradient method, the JSON file.

    from hccs_lab.calibrate import calibrate
    cal = calibrate(bank, seq_len=128)          # one (B, S, D) and int8 scale per head
    cal.to_json("calibration.json")

Modules: `objective` (row statistics and the exact KL), `grid` (branch and bound over every valid
candidate), `gradient` (relaxation + integer polish), `calibration` (the result and its JSON),
`api` (the bank and row front doors).
"""
from .api import SCALE_PERCENTILE, HeadChoice, calibrate, calibrate_rows, fingerprint_texts, head_params
from .calibration import GRANULARITIES, METHODS, SCHEMA_NAME, SCHEMA_VERSION, Calibration, HeadCalibration
from .gradient import Relaxed, polish, relax
from .grid import CandidateRegion, SearchResult, candidate_region, grid_search
from .objective import RowStats, default_params, exact_kl, objective, pool_stats, row_stats, stats_from_histograms

__all__ = ["calibrate", "calibrate_rows", "head_params", "HeadChoice", "fingerprint_texts", "Calibration", "HeadCalibration", "GRANULARITIES",
           "METHODS", "SCHEMA_NAME", "SCHEMA_VERSION", "SCALE_PERCENTILE", "Relaxed", "polish", "relax",
           "CandidateRegion", "SearchResult", "candidate_region", "grid_search", "RowStats", "default_params",
           "exact_kl", "objective", "pool_stats", "row_stats", "stats_from_histograms"]
