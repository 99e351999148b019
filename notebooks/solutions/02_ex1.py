# Solution 02, exercise 1: the best (S, D) of the KL map against a setting that clips nothing.
import numpy as np

from hccs_lab.capture import capture_logits, notebook_capture_settings
from hccs_lab.data import calibration_texts
from hccs_lab.models import load
from hccs_lab.core import max_base
from hccs_lab.widgets import ClipSlopePlayground

settings = notebook_capture_settings()
bank = capture_logits(load("minilm-l6"), calibration_texts(settings.n_texts), max_len=settings.max_len, progress=False)
s = bank.summary()
layer, head = (int(i) for i in np.unravel_index(np.argmax(s.p99), s.p99.shape))
pg = ClipSlopePlayground(bank[layer, head])
B = max_base(pg.n)
kl_map = pg.kl_map(B)
S_best, D_best = (int(i) for i in np.unravel_index(np.nanargmin(kl_map), kl_map.shape))
best = pg.set_params(B, S_best, D_best)
no_clip = pg.set_params(B, B // 127, 127)  # the steepest line that never goes negative over all 127 steps
print(f"L{layer} H{head}, n={pg.n}, B={B}")
print(f"best of the map   S={S_best:3d} D={D_best:3d}: mean KL {best.kl_mean:.4f}, tau {best.kendall_tau:.3f}")
print(f"no clipping       S={B // 127:3d} D=127: mean KL {no_clip.kl_mean:.4f}, tau {no_clip.kendall_tau:.3f}")
assert abs(best.kl_mean - np.nanmin(kl_map)) < 1e-9 and best.kl_mean < no_clip.kl_mean
# Clipping lets the slope be steep near the max, where softmax puts its mass, and gives every far key
# the same small floor: a straight line over the whole range is far too flat.
