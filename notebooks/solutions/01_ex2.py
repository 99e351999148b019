# Solution 01, exercise 2: padding does not leak into a head's statistics.
import numpy as np

from hccs_lab.capture import capture_logits, head_statistics
from hccs_lab.data import load_split
from hccs_lab.models import load

loaded = load("minilm-l6")
texts = load_split("test").texts[:100]
short, long_ = min(texts, key=len), max(texts, key=len)
alone = capture_logits(loaded, [short], max_len=64, batch_size=1, progress=False)
padded = capture_logits(loaded, [short, long_], max_len=64, batch_size=2, progress=False)
rows_of_short = np.nonzero(padded.text_index == 0)[0]  # the short snippet's rows in the padded batch
print(f"short snippet: {alone.n_rows} tokens; padded to {int(padded.mask.sum(1).max())} keys in the batch")
worst = 0.0
for layer, head in alone.heads():
    a = head_statistics(alone[layer, head])
    p = head_statistics(padded[layer, head].take(rows_of_short))
    worst = max(worst, max(abs(a[k] - p[k]) for k in ("std", "p99", "entropy", "scale")))
print(f"largest difference of any statistic over all 72 heads: {worst:.2e}")
assert worst < 1e-3
