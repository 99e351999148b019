# Exercise 04.2: two schedules, identical outputs, different busiest slots.
import numpy as np

from hccs_lab.aie import emulate, hccs_kernel
from hccs_lab.config import quick_mode
from hccs_lab.core import HCCSParams

n = 64 if quick_mode() else 128
try:  # the head's captured rows when the model is available
    from hccs_lab.capture import capture_logits
    from hccs_lab.data import calibration_texts
    from hccs_lab.models import load

    bank = capture_logits(load("minilm-l6"), calibration_texts(4), max_len=n, progress=False)
    x = bank[1, 6].int8(0.1)
except Exception as e:  # pragma: no cover - offline model missing
    print("no captured rows, using random ones:", e)
    x = np.random.default_rng(0).integers(-128, 128, size=(200, n)).astype(np.int8)

p = HCCSParams(200, 3, 40)
outs = {}
for schedule in ("paper", "wide64s"):
    y, rep = emulate(hccs_kernel(p, "u8-clb", "aie-ml", n, schedule), x)
    outs[schedule] = y
    busiest = max(rep.slot_busy, key=rep.slot_busy.get)
    print(f"{schedule:<7} {rep.cycles_per_row:6.1f} cycles/row, busiest slot {busiest} "
          f"({rep.slot_busy[busiest]} issues/row), all slots {rep.slot_busy}")
print("identical outputs:", np.array_equal(outs["paper"], outs["wide64s"]))
