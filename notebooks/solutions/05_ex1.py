# Solution 05, exercise 1: HCCS QAT with the Linear layers fake-quantized to int8 as well.
from hccs_lab.config import quick_mode
from hccs_lab.retrain.experiment import ExperimentSettings, run_experiment
from hccs_lab.retrain.results import summary_line

quick = quick_mode()
# one QAT run each (the headline u8-clb kernel, per head); the model is tiny so it runs in minutes
only = dict(granularities=("head",), direct_variants=(), calib_methods=("grid",))
base = ExperimentSettings.for_model("tiny", quick=quick, **only)
with_linears = ExperimentSettings.for_model("tiny", quick=quick, quantize_linears=True, **only)
a = run_experiment(base, progress=False)
b = run_experiment(with_linears, progress=False)
print("HCCS only:            ", summary_line(a))
print("HCCS + int8 Linears:  ", summary_line(b))
print(f"fake-quantized Linear layers: {b['hccs_qat']['fake_quantized_linears']}")
diff = 100 * (b["hccs_qat"]["accuracy"] - a["hccs_qat"]["accuracy"])
print(f"accuracy after QAT moves by {diff:+.1f} points when the Linear layers are int8 too")
# Both runs start from the same float32 model and the same calibration, so the float32 and direct
# columns agree; only the retraining differs. int8 weights (per channel) and activations (per tensor)
# usually cost well under a point on top of HCCS once retrained: HCCS is the bigger change. Compare the
# move with the intervals of each run against float32 before calling it real.
assert b["hccs_qat"]["fake_quantized_linears"] == 13
assert a["float32"]["accuracy"] == b["float32"]["accuracy"]
assert a["hccs_direct"]["accuracy"] == b["hccs_direct"]["accuracy"]
