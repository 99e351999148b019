# Solution 01, exercise 1: the three most focused heads of MiniLM on Rotten Tomatoes snippets.
import numpy as np

from hccs_lab.capture import capture_logits, notebook_capture_settings
from hccs_lab.data import calibration_texts
from hccs_lab.models import load

settings = notebook_capture_settings()
bank = capture_logits(load("minilm-l6"), calibration_texts(settings.n_texts), max_len=settings.max_len, progress=False)
summary = bank.summary()
order = np.argsort(summary.norm_entropy, axis=None)[:3]
for flat in order:
    layer, head = np.unravel_index(flat, summary.norm_entropy.shape)
    print(f"L{layer} H{head}: normalised entropy {summary.norm_entropy[layer, head]:.3f}, "
          f"logit std {summary.std[layer, head]:.2f}, suggested scale {summary.scale[layer, head]:.4f}")
focused = [np.unravel_index(f, summary.norm_entropy.shape) for f in order]
assert all(not summary.broad[l, h] for l, h in focused)
# In all-MiniLM-L6-v2 the most focused heads sit in the middle layers (1-2): early layers attend
# broadly, and one layer-0 head has a huge spread yet still counts as focused on [CLS]/[SEP].
print("layers of the three most focused heads:", sorted({int(l) for l, _ in focused}))
