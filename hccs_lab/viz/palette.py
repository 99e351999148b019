"""Colours every figure shares: Okabe & Ito's palette, told apart with every common colour-vision
deficiency (no red-green pairs), and a perceptually uniform sequential scale for heatmaps."""
from __future__ import annotations

BLUE, ORANGE, SKY, GREEN, YELLOW, VERMILLION, PURPLE = (
    "#0072B2", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#D55E00", "#CC79A7")
SEQUENTIAL = "Viridis"
# series of a line chart: colour, marker symbol and dash repeat the cue
SERIES = ((BLUE, "circle", "solid"), (ORANGE, "diamond", "dash"), (GREEN, "square", "dot"),
          (PURPLE, "triangle-up", "dashdot"), (SKY, "x", "longdash"), (VERMILLION, "cross", "solid"))
