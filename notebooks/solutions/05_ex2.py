# Solution 05, exercise 2: what each step from the real-valued reading to the shipped kernel costs, directly.
from hccs_lab.config import quick_mode
from hccs_lab.retrain.experiment import ExperimentSettings, prepare
from hccs_lab.retrain.measure import Bench
from hccs_lab.retrain.results import committed_results
from hccs_lab.retrain.stats import format_difference, paired_difference

# 1. the committed MiniLM run measured every reading directly, each against float32
saved = committed_results("minilm-l6")
if saved:
    for reading in ("float", "i16-div", "u8-div", "u8-clb", "i16-clb"):
        e = saved["direct"][reading]
        print(f"MiniLM {reading:8s} direct {100 * e['accuracy']:.1f}%  vs float32 {format_difference(e['vs_float32'])} pp")

# 2. the kernel's padding rule, live: the same calibration through a kernel with a mask (ours) and
#    without one (aie4ml: every sentence padded to 64 keys that take part), paired sentence by sentence
prep = prepare(ExperimentSettings.for_model("tiny", quick=quick_mode(), granularities=("head",)), progress=False)
as_min = Bench.of(prep).reading_correct("head", "u8-clb")  # prep's target is aie4ml
# same parameters (aie4ml's rules are stricter), masked keys get 0
exclude = Bench.of(prep, target="hccs-lab").reading_correct("head", "u8-clb")
d = paired_difference(as_min, exclude)
print(f"tiny u8-clb: without a mask {100 * as_min.mean():.1f}%, with one {100 * exclude.mean():.1f}%, "
      f"difference {format_difference(d)} pp")
# Read the steps against their intervals: on MiniLM the integer rounding and the 8-bit output cost
# little; CLB's reciprocal (up to 2x too large) scales every row by the same factor, which the next
# layer's LayerNorm partly absorbs, and the padded keys of a kernel without a mask take a share of
# every row in proportion to the floor score B - S*D. (In quick mode the tiny model predicts the
# majority class and every figure is the same: a smoke test.)
assert 0 <= d["better"] + d["worse"] <= len(as_min)
