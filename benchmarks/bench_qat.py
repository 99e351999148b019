"""Training-step cost of HCCS QAT on the tiny model: float32 softmax vs the real-valued HCCS reading vs the
deployed u8-clb kernel (exact integer forward, straight-through backward; with a mask, and without one
padded to 64 keys as for aie4ml) vs HCCS + int8 Linears.

Prints the median milliseconds per optimizer step (batch 32, RT sentences, at most 64 tokens) and the
ratios to float32, plus the test-set evaluation time. Noisy on a shared machine: read the ratios.
Run: .venv/bin/python benchmarks/bench_qat.py [--steps N]
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from hccs_lab.models import tiny
from hccs_lab.data import load_split
from hccs_lab.models import load
from hccs_lab.models.finetune import TrainSettings, build_optimizers, collate, encode
from hccs_lab.retrain import HCCSTables, fake_quantize_linears, use_hccs
from hccs_lab.retrain.evaluate import accuracy


def fixed_tables(n_layers: int, n_heads: int) -> HCCSTables:
    # a typical calibrated head at n=64 (B*64 <= 32767); the cost does not depend on the values
    col = lambda v: [torch.full((n_heads, 1, 1), float(v)) for _ in range(n_layers)]
    return HCCSTables(B=col(500), S=col(8), D=col(60), scale=col(0.05))


def ms_per_step(model, tok, ids, steps: int, pad_to: int | None = None) -> float:
    s = TrainSettings(lr=1e-4, sparse_embeddings=True)
    model.get_input_embeddings().sparse = True
    opts = build_optimizers(model, s)
    model.train()
    times = []
    for i in range(steps):
        batch = ids[(i * 32) % (len(ids) - 32):][:32]
        x, a = collate(batch, tok.pad_token_id, pad_to)
        y = torch.randint(0, 2, (len(batch),))
        t = time.perf_counter()
        loss = model(input_ids=x, attention_mask=a, labels=y).loss
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times[2:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tok = tiny.load_tokenizer()
    ids = encode(tok, load_split("train").texts[:2048], 64)
    base = tiny.build_tiny()
    load((base, tok))
    tables = fixed_tables(2, 2)
    variants = {}  # name -> (model, pad_to)
    variants["float32 softmax"] = (copy.deepcopy(base), None)
    variants["HCCS float reading"] = (use_hccs(copy.deepcopy(base), tables), None)
    variants["u8-clb, masked"] = (use_hccs(copy.deepcopy(base), tables, variant="u8-clb", padding="exclude"), None)
    variants["u8-clb, no mask, 64"] = (use_hccs(copy.deepcopy(base), tables, variant="u8-clb", padding="as_min"), 64)
    m = copy.deepcopy(base)
    fake_quantize_linears(m)
    variants["HCCS + int8 Linears"] = (use_hccs(m, tables), None)
    ref = None
    for name, (model, pad_to) in variants.items():
        load((model, tok))
        ms = ms_per_step(model, tok, ids, args.steps, pad_to)
        ref = ref or ms
        print(f"{name:22s} {ms:7.1f} ms/step  x{ms / ref:.2f} vs float32")
    test = load_split("test")
    t = time.perf_counter()
    accuracy(variants["u8-clb, no mask, 64"][0], tok, test.texts, test.labels, pad_to=64)
    print(f"evaluate {len(test.texts)} test sentences with the u8-clb kernel, no mask, 64 keys: "
          f"{time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
