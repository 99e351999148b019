"""Real data that ships offline: Rotten Tomatoes snippets for sentiment (`sentiment`)."""
from .sentiment import SPLITS, TextSplit, calibration_texts, data_path, load_split

__all__ = ["TextSplit", "SPLITS", "calibration_texts", "data_path", "load_split"]
