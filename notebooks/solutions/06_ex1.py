# Solution 06, exercise 1: per head <= per layer <= global, on the same captured rows.
from hccs_lab import report as R

ctx = R.build_context(R.ReportSettings.quick(), progress=False)
means = {g: c.mean_kl_after for g, c in ctx.calibrations.items()}
for g, m in means.items():
    print(f"{g:>6}: mean KL after calibration {m:.4f} nats (before {ctx.calibrations[g].mean_kl_before:.4f})")
# a per-head set can always reuse its layer's set, and a layer's set the global one, so with an exact
# search the finer granularity is never worse (a tiny slack for rows pooled with unequal weights)
assert means["head"] <= means["layer"] + 1e-6
assert means["layer"] <= means["global"] + 1e-3
