# Solution 06, exercise 2: the chosen kernel on AIE-ML and on AIE-MLv2 (emulator estimates).
from hccs_lab import report as R

for arch in ("aie-ml", "aie-mlv2"):
    ctx = R.build_context(R.ReportSettings.quick(arch=arch, granularities=("head",)), progress=False)
    kc = R.choose_kernel(ctx)
    print(f"{arch:>8}: head L{kc.layer}H{kc.head} -> {kc.variant}, {kc.report.cycles_per_row:.1f} cycles/row, "
          f"{kc.report.gelem_per_s:.2f} G elem/s (estimate), bit-exact: {kc.bit_exact}")
    for r in kc.rows:
        print(f"          {r['variant']:>8}: KL {r['kl']:.4f}, {r['cycles']:.1f} cycles/row, {r['gelem']:.2f} G elem/s")
    assert kc.bit_exact
