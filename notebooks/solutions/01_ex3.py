# Solution 01, exercise 3: save the bank, load it back, open a playground on the broadest head.
import tempfile
from pathlib import Path

import numpy as np

from hccs_lab.capture import LogitBank, capture_logits, notebook_capture_settings
from hccs_lab.data import calibration_texts
from hccs_lab.models import load
from hccs_lab.widgets import ClipSlopePlayground

settings = notebook_capture_settings()
bank = capture_logits(load("minilm-l6"), calibration_texts(settings.n_texts), max_len=settings.max_len, progress=False)
with tempfile.TemporaryDirectory() as tmp:
    path = bank.save(Path(tmp) / "minilm_rt.npz")
    print(f"saved {path.stat().st_size / 1e6:.1f} MB")
    back = LogitBank.load(path)
before, after = bank.summary(), back.summary()
for field in ("std", "p99", "entropy", "norm_entropy", "scale"):
    assert np.array_equal(getattr(before, field), getattr(after, field)), field
layer, head = (int(i) for i in np.unravel_index(np.argmax(after.norm_entropy), after.norm_entropy.shape))
playground = ClipSlopePlayground(back[layer, head], title=f"L{layer} H{head}")
print(f"broadest head L{layer} H{head}: start {playground.params}, mean KL {playground.state.kl_mean:.4f}")
