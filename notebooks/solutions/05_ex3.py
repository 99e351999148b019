# Solution 05, exercise 3: which head changed most during retraining?
from hccs_lab.config import quick_mode
from hccs_lab.retrain.experiment import ExperimentSettings, run_experiment

only = dict(granularities=("head",), direct_variants=(), calib_methods=("grid",))
results = run_experiment(ExperimentSettings.for_model("tiny", quick=quick_mode(), **only), progress=False)
heads = results["fidelity"]["heads"]
for h in heads:
    print(f"L{h['layer']}H{h['head']}: entropy {h['entropy_float']:.2f} nats | KL direct {h['kl_direct']:.4f} "
          f"| KL after QAT {h['kl_qat']:.4f} | retrained model's own softmax vs HCCS {h['kl_self_after_qat']:.4f}")
moved = max(heads, key=lambda h: abs(h["kl_qat"] - h["kl_direct"]))
print(f"largest change: L{moved['layer']}H{moved['head']} "
      f"(KL vs float32 softmax {moved['kl_direct']:.4f} -> {moved['kl_qat']:.4f})")
# kl_direct and kl_qat compare against the same reference (the float32 model's softmax), so their
# difference is how far retraining moved the head's pattern. kl_self_after_qat says whether the
# retrained model's logits are still ones HCCS approximates well; retraining optimises accuracy only.
# The committed MiniLM run has the same table for 72 heads: committed_results("minilm-l6")["fidelity"].
assert all(h["kl_direct"] >= 0 and h["kl_qat"] >= 0 for h in heads)
