# Solution 06, exercise 3: review a calibration that was saved as JSON.
import tempfile
from pathlib import Path

from hccs_lab import report as R

settings = R.ReportSettings.quick(granularities=("head",))
ctx = R.build_context(settings, progress=False)
path = ctx.calibration.to_json(Path(tempfile.mkdtemp()) / "calibration.json")

again = R.build_context(R.ReportSettings.quick(calibration=str(path)), progress=False)
print(again.calibration_source)
for layer in range(ctx.bank.n_layers):
    for head in range(ctx.bank.n_heads):
        assert again.calibration.params(layer, head) == ctx.calibration.params(layer, head)
html = "".join(b for b in R.section_calibration(again).blocks if isinstance(b, str))
assert "read from calibration.json" in html
print("same parameters for all", ctx.bank.n_layers * ctx.bank.n_heads, "heads")
