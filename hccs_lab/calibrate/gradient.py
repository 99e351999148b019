"""Gradient calibration: a continuous relaxation of (B, S, D) optimised with torch, then an exact integer polish."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.params import HCCSParams, max_base, target_mask
from .grid import SearchResult, grid_search
from .objective import N_CLIP, N_DIST, RowStats, exact_kl


@dataclass
class Relaxed:
    """Real-valued optimum of one parameter group: slope u = S/B per quantized step, clip D in steps."""

    u: float
    D: float
    kl_float: float


def relax(groups: Sequence[RowStats], steps: int = 100, lr: float = 0.08) -> list[Relaxed]:
    """Fit a real-valued (u, D) per group of rows with Adam: the continuous relaxation of (B, S, D).

    The model is the real-valued HCCS on the int8 grid (`hccs_float` of the dequantized logits, B = 1
    since only S/B and D matter after normalisation): s(e) = 1 - u*min(e, D) for a key e steps below
    its row max, with D real. It is parameterised so every point is valid: D = 127*sigmoid(a),
    u = sigmoid(b)/D (so 1 - u*D > 0). Through the row statistics its KL costs O(rows + 256) per
    evaluation instead of O(rows * n): with Pbar the summed mass histogram,

        sum_r cross_r = sum_e Pbar[e] log s(e) - sum_r w_r log(N_r - u T_r(D)),

    and T_r(D) is linear in D between integers (min(e, D) is, for integer e), so interpolating the
    integer T table is exact. The 2**-16 floor is applied to log(s(e)/Zbar) with Zbar the mean
    normaliser (the per-row floor would cost O(rows * 256)); the exact integer polish that follows
    uses the true objective. The scale is not a free variable: in the float model it only rescales u
    and D, so the head's int8 scale stays and D absorbs the rest (D <= 127 is the integer limit).
    Each group starts from the best point of a small (D, u*D) grid, then Adam runs on all groups in
    one batched pass.
    """
    import torch

    G = len(groups)
    R = max(g.n_rows for g in groups)
    e = torch.arange(N_DIST, dtype=torch.float64)
    P = torch.tensor(np.stack([g.mass_hist for g in groups]))  # [G, 256]
    N = torch.zeros(G, R, dtype=torch.float64)
    w = torch.zeros(G, R, dtype=torch.float64)
    T = torch.zeros(G, N_CLIP + 1, R, dtype=torch.float64)
    for i, g in enumerate(groups):
        N[i, :g.n_rows] = torch.from_numpy(g.N.astype(np.float64))
        w[i, :g.n_rows] = torch.from_numpy(g.w)
        T[i, :N_CLIP, :g.n_rows] = torch.from_numpy(g.T.astype(np.float64))
        # T(128) for interpolation up to D = 127 exactly (never reached: D < 127 strictly)
        T[i, N_CLIP, :g.n_rows] = T[i, N_CLIP - 1, :g.n_rows]
    N = torch.where(N > 0, N, torch.ones_like(N))  # padded rows carry w = 0
    negent = torch.tensor([g.neg_entropy for g in groups], dtype=torch.float64)
    rows = torch.tensor([g.n_rows for g in groups], dtype=torch.float64)
    floor = math.log(2.0 ** -16)
    gi = torch.arange(G)

    def kl_of(D, u):  # D, u: [G] or [G, M] -> KL per entry
        shape = D.shape
        D2, u2 = D.reshape(G, -1), u.reshape(G, -1)
        j = D2.detach().floor().clamp(0, N_CLIP - 1).long()
        fr = D2 - j
        Tj = T[gi[:, None], j]  # [G, M, R]
        Tj1 = T[gi[:, None], j + 1]
        Tr = Tj + fr[..., None] * (Tj1 - Tj)
        Z = N[:, None, :] - u2[..., None] * Tr  # [G, M, R]
        logZ = torch.log(Z)
        zbar = ((w[:, None, :] * logZ).sum(-1) / w.sum(-1, keepdim=True)).detach()
        s = 1 - u2[..., None] * torch.minimum(e, D2[..., None])  # [G, M, 256]
        logs = torch.clamp(torch.log(s.clamp(min=1e-300)), min=floor + zbar[..., None])
        cross = (P[:, None, :] * logs).sum(-1) - (w[:, None, :] * logZ).sum(-1)
        return ((negent[:, None] - cross) / rows[:, None]).reshape(shape)

    with torch.no_grad():  # starting points: a small grid in (D, u*D)
        Dg = torch.tensor([2.0, 4, 8, 16, 32, 64, 100, 126], dtype=torch.float64)
        fg = torch.tensor([0.2, 0.5, 0.8, 0.95], dtype=torch.float64)
        DD, FF = torch.meshgrid(Dg, fg, indexing="ij")
        DD, FF = DD.reshape(-1), FF.reshape(-1)
        k0 = kl_of(DD.expand(G, -1).contiguous(), (FF / DD).expand(G, -1).contiguous())
        best = k0.argmin(1)
        D0, f0 = DD[best], FF[best]
    a = torch.logit(D0 / 127).clone().requires_grad_(True)
    b = torch.logit(f0).clone().requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=lr)

    def params():
        D = 127 * torch.sigmoid(a)
        return D, torch.sigmoid(b) / D

    for _ in range(steps):
        opt.zero_grad()
        D, u = params()
        kl_of(D[:, None], u[:, None]).sum().backward()
        opt.step()
    with torch.no_grad():
        D, u = params()
        k = kl_of(D[:, None], u[:, None])[:, 0]
    return [Relaxed(float(u[i]), float(D[i]), float(k[i])) for i in range(G)]


def polish(stats: RowStats, seq_len: int, u: float, D: float, B_max: int | None = None, max_rounds: int = 50,
           target: str = "hccs-lab") -> SearchResult:
    """Round a relaxed (u, D) to integers and improve it by exact local search.

    First the exact optimum (by the grid's bound) of the integer points along the relaxed shape:
    every B with S within 1.5 of u*B and D within 3 of the relaxed clip; then coordinate moves of
    +-1 in (B, S, D) until none helps.
    """
    t0 = time.perf_counter()
    top = max_base(seq_len) if B_max is None else min(max_base(seq_len), int(B_max))
    D0 = min(max(D, 0.0), 127.0)

    def near(c):
        return (np.abs(c[:, 2] - D0) <= 3.0) & (np.abs(c[:, 1] - u * c[:, 0]) <= 1.5)

    first = grid_search(stats, seq_len, B_max=B_max, subset=near, target=target)
    best, best_kl, evaluated = np.array([first.params.B, first.params.S, first.params.D]), first.kl, first.evaluated
    moves = np.array([(dB, dS, dD) for dB in (-1, 0, 1) for dS in (-1, 0, 1) for dD in (-1, 0, 1) if (dB, dS, dD) != (0, 0, 0)])
    for _ in range(max_rounds):
        nb = best[None, :] + moves
        nb = nb[target_mask(nb, seq_len, target) & (nb[:, 0] <= top)]
        if len(nb) == 0:
            break
        kl = exact_kl(stats, nb)
        evaluated += len(nb)
        j = int(np.argmin(kl))
        if kl[j] >= best_kl:
            break
        best, best_kl = nb[j], float(kl[j])
    return SearchResult(HCCSParams(*(int(v) for v in best)), best_kl, first.candidates, evaluated, time.perf_counter() - t0)

