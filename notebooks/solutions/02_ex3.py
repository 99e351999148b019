# Solution 02, exercise 3: what the int8 scale trades off.
import numpy as np

from hccs_lab.capture import capture_logits, notebook_capture_settings
from hccs_lab.data import calibration_texts
from hccs_lab.models import load
from hccs_lab.widgets import ClipSlopePlayground

settings = notebook_capture_settings()
bank = capture_logits(load("minilm-l6"), calibration_texts(settings.n_texts), max_len=settings.max_len, progress=False)
s = bank.summary()
layer, head = (int(i) for i in np.unravel_index(np.argmax(s.p99), s.p99.shape))
pg = ClipSlopePlayground(bank[layer, head])
base = pg.scale
best = {}
for factor in (0.5, 1.0, 2.0):
    pg.set_scale(base * factor)
    best[factor] = float(np.nanmin(pg.kl_map()))
    print(f"scale x{factor}: {base * factor:.4f} logit units per step, best mean KL on the map {best[factor]:.4f}")
# A smaller scale resolves the logits near the max more finely but the clip D <= 127 then reaches less
# far below the max; a larger scale reaches further but rounds close keys together. The suggested
# scale (99th percentile of distances -> 127 steps) sits between the two.
assert all(np.isfinite(v) for v in best.values())
