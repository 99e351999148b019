# Solution 07, exercise 1: the strongest sink head -- what B - S*D HCCS would need to match it.
import numpy as np

from hccs_lab.calibrate import calibrate
from hccs_lab.capture import capture_logits
from hccs_lab.config import quick_mode
from hccs_lab.data import text
from hccs_lab.models import decoders, load

SEQ_LEN = 128
loaded = load("smollm2-135m")
windows = text.calibration_texts(loaded.tokenizer, 4 if quick_mode() else 32, SEQ_LEN)
bank = capture_logits(loaded, windows, max_len=SEQ_LEN, batch_size=4, max_rows_per_head=128, progress=False)
cal = calibrate(bank, SEQ_LEN, target="hccs-lab", progress=False)
sink = decoders.first_key_mass(bank, cal, "i16-div")
l, h = np.unravel_index(np.argmax(sink["softmax"]), sink["softmax"].shape)
p, prm = sink["softmax"][l, h], cal.params(l, h)
n = SEQ_LEN
# the top key's largest HCCS share is B / (B + (n-1)(B - S*D)); solve it for the floor score B - S*D
needed = prm.B * (1 - p) / (p * (n - 1))
print(f"strongest sink: layer {l} head {h}, softmax mass on key 0 {p:.3f}, HCCS {sink['hccs'][l, h]:.3f}, "
      f"ceiling at {prm} {sink['hccs_cap'][l, h]:.3f}")
print(f"to reach {p:.3f} HCCS needs B - S*D <= {needed:.2f} (now {prm.B - prm.S * prm.D}): "
      + ("an integer floor that small exists" if needed >= 1 else "below 1: only a floor of 0 (every other key at zero) gets there"))
print("sink heads per layer:", (sink["softmax"] > 0.5).sum(1).tolist())
assert 0 <= sink["hccs"][l, h] <= sink["hccs_cap"][l, h] + 1e-6
