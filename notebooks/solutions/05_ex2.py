# Solution 05, exercise 2: how much of the direct-substitution drop is the int8 grid, how much HCCS?
from hccs_lab import retrain as qat
from hccs_lab.config import quick_mode
from hccs_lab.retrain.experiment import ExperimentSettings, prepare

prep = prepare(ExperimentSettings.for_model("tiny", quick=quick_mode(), granularities=("head",)), progress=False)
tables = prep.tables["head"]
qat.use_hccs(prep.model, tables, quantize=True)
acc_int8 = prep.accuracy(prep.model)
qat.use_hccs(prep.model, tables, quantize=False)
acc_real = prep.accuracy(prep.model)
qat.use_hccs(prep.model, None)
print(f"float32 softmax:               {100 * prep.float_accuracy:.1f}%")
print(f"HCCS on real-valued logits:    {100 * acc_real:.1f}%")
print(f"HCCS on int8 logits (the kernel): {100 * acc_int8:.1f}%")
# The int8 grid of a calibrated head is fine (its scale spreads the 99th percentile of distances over
# 127 steps), so the two HCCS figures are close: the drop comes from the shape of HCCS (a clipped line
# instead of an exponential), not from quantizing its input. That is why retraining, not a finer grid,
# is what brings the accuracy back.
assert abs(acc_real - acc_int8) < 0.1
