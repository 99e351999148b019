# Solution 07, exercise 2: what a kernel built for a longer padded context costs a head (n*B <= 32767).
from hccs_lab.calibrate import calibrate_rows
from hccs_lab.capture import capture_logits
from hccs_lab.config import quick_mode
from hccs_lab.core import max_base
from hccs_lab.data import text
from hccs_lab.models import load

SEQ_LEN = 128
loaded = load("smollm2-135m")
windows = text.calibration_texts(loaded.tokenizer, 4 if quick_mode() else 32, SEQ_LEN)
bank = capture_logits(loaded, windows, max_len=SEQ_LEN, batch_size=4, max_rows_per_head=128, progress=False)
rows = bank[3, 2]
results = {}
for n in (128, 512, 2048):
    # the same causal rows of 128 keys, under the base limit of a kernel padded to n keys
    params, scale, kl = calibrate_rows(rows.logits, rows.mask, n, target="hccs-lab")
    results[n] = kl
    print(f"kernel for n={n:>4}: B <= {max_base(n):>3}  best {params}  mean KL {kl:.4f}")
# a longer padded length only removes bases, so the optimum can only get worse
assert results[128] <= results[512] + 1e-12 <= results[2048] + 2e-12
