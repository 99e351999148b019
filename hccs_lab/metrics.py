"""Fixed public name (DESIGN.md): the fidelity metrics live in `hccs_lab.core.metrics`."""
from .core.metrics import (KL_FLOOR, RankPreservation, entropy, js, kendall_tau, kl, plogp, rank_preservation,
                           spearman, topk_overlap)

__all__ = ["KL_FLOOR", "RankPreservation", "entropy", "js", "kendall_tau", "kl", "plogp", "rank_preservation",
           "spearman", "topk_overlap"]
