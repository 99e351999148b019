"""The review's "Deploy with aie4ml" section: the reviewed heads through the authors' own toolchain."""
from __future__ import annotations

import html
import tempfile

from ..config import quick_mode
from ..core.params import target_violations
from .context import Context, Section
from .html import html_table, paragraph


def deploy_heads(ctx: Context, limit: int) -> list[tuple[int, int]]:
    """Heads of the chosen kernel's layer that aie4ml accepts, the chosen head first, at most `limit`."""
    cal = ctx.calibration
    kc = ctx.kernel_choice
    layer, first = (kc.layer, kc.head) if kc is not None else (0, 0)
    order = [first] + [h for h in range(cal.n_heads) if h != first]
    ok = [(layer, h) for h in order if not target_violations(cal.params(layer, h), cal.seq_len, "aie4ml")]
    return ok[:limit]


def section_deploy(ctx: Context) -> Section:

    from ..export import deploy_and_check

    sec = Section("deploy", "Deploy with aie4ml (the authors' toolchain)")
    variant = ctx.kernel_choice.variant if ctx.kernel_choice is not None else "u8-clb"
    heads = deploy_heads(ctx, 3 if quick_mode() else ctx.calibration.n_heads)
    cal = ctx.calibration
    if not heads:
        sec.add(paragraph(f"No head of this layer satisfies aie4ml's rules (the calibration's target is "
                          f"{html.escape(cal.target)}): recalibrate with <code>--target aie4ml</code>."))
        return sec
    with tempfile.TemporaryDirectory(prefix="hccs_review_aie4ml_") as tmp:
        dep = deploy_and_check(cal, ctx.bank, heads, f"{tmp}/project", variant=variant)
    m = dep.manifest
    sec.add(paragraph(
        f"aie4ml {html.escape(str(m['aie4ml_version']))} wrote a project for {len(dep.heads)} head(s) of layer "
        f"{heads[0][0]} ({html.escape(variant)}, {m['layout']} layout, seq_len {m['seq_len']}) through its own "
        f"<code>from_onnx(...).write()</code>; the calibration's target is <b>{html.escape(cal.target)}</b>. "
        f"Its generated kernel sources, compiled unmodified with g++ against hccs-lab's AIE API shim, ran each head's "
        f"captured rows (padded keys enter as int8 -128, as aie4ml has no mask): "
        + ("<b>bit-exact</b> with <code>hccs_int</code> on every row." if dep.all_bit_exact
           else "<b style='color:#b2182b'>NOT bit-exact</b> (see the table).")))
    sec.add(html_table(dep.table(), [("head", "head"), ("node", "ONNX node"), ("B", "B"), ("S", "S"), ("D", "D"),
                                     ("rows", "rows run"), ("bit_exact", "bit-exact"), ("build_s", "g++ build (s)")]))
    sec.add("<details><summary>project tree and the generated parameters.h lines</summary><pre class='cpp'><code>"
            + html.escape("\n".join(dep.tree)) + "\n\n// src/parameters.h (key lines)\n"
            + html.escape(dep.parameters_h) + "</code></pre></details>")
    return sec
