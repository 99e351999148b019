"""Export some calibrated heads through aie4ml, run the project's kernels on their captured rows, compare.

The check a design review asks for: what aie4ml generates for these heads (its own parameters.h
lines and project tree), and whether the kernels it generated, built on the host, compute exactly
what hccs-lab evaluated (`hccs_int` on the same int8 rows). aie4ml takes no mask, so padded keys
enter as int8 -128 and take part in the max and in Z, as on the AI Engine; `hccs_int` is called
on exactly those rows without a mask.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


from ..core.params import split_variant
from ..core.reference import hccs_int
from ..errors import InputError
from .aie4ml_project import export_aie4ml
from .hostbuild import emulate_aie4ml
from .project_files import instance_structs


@dataclass
class DeployedHead:
    layer: int
    head: int
    node: str
    params: dict
    rows: int
    bit_exact: bool
    differing_rows: int
    cached_build: bool
    build_seconds: float


@dataclass
class Deployment:
    out_dir: Path
    manifest: dict
    heads: list = field(default_factory=list)  # of DeployedHead
    parameters_h: str = ""  # the structs of the exported heads, as aie4ml wrote them
    tree: list = field(default_factory=list)  # the project's files, relative paths

    @property
    def all_bit_exact(self) -> bool:
        return all(h.bit_exact for h in self.heads)

    def table(self) -> list[dict]:
        return [{"head": f"L{h.layer}H{h.head}", "node": h.node, "B": h.params["B"], "S": h.params["S"],
                 "D": h.params["D"], "rows": h.rows, "bit_exact": "yes" if h.bit_exact else f"NO ({h.differing_rows})",
                 "build_s": round(h.build_seconds, 2), "cached": h.cached_build} for h in self.heads]


def project_tree(project_dir, depth: int = 2) -> list[str]:
    """Files and folders of a project up to `depth` levels, sorted (folders end in '/')."""
    root = Path(project_dir)
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if len(rel.parts) <= depth:
            out.append(str(rel) + ("/" if p.is_dir() else ""))
    return out


# the parameters.h lines a reviewer compares with the calibration (buffer placements left out)
_KEY_FIELDS = re.compile(r"^(\};|\s*(struct |using output_t|static constexpr (int (ROWS|COLS|CAS_NUM|INV_SHIFT)|bool)|"
                         r".*\b(B|S|Dmax)\[CAS_NUM\]))")


def struct_lines(project_dir, structs) -> str:
    """The key lines (shape, output type, reciprocal flags, per-tile B, S, Dmax) of the named structs."""
    text = (Path(project_dir) / "src" / "parameters.h").read_text()
    parts = []
    for s in structs:
        m = re.search(r"struct\s+" + re.escape(s) + r"\s*\{.*?\n\};", text, re.S)
        if m:
            parts.append("\n".join(line for line in m.group(0).splitlines() if _KEY_FIELDS.match(line)))
    return "\n\n".join(parts)


def deploy_and_check(calibration, bank, heads, out_dir, variant: str = "u8-clb", layout: str = "linear",
                     max_rows: int = 512) -> Deployment:
    """Export `heads` ([(layer, head), ...]) of `calibration` to `out_dir`, run each head's captured rows
    (at most `max_rows`, as int8 with its calibrated scale) through aie4ml's kernel on the host, and
    compare with `hccs_int` bit for bit."""
    out, recip = split_variant(variant)
    n = int(calibration.seq_len)
    if bank.seq_len != n:
        raise InputError(f"the bank was captured at {bank.seq_len} keys, the calibration is for seq_len {n}")
    picked = [{"layer": l, "head": h, **calibration.params(l, h).as_dict(), "scale": calibration.scale(l, h)}
              for l, h in heads]
    manifest = export_aie4ml(out_dir, picked, n, variant, layout=layout)
    structs = instance_structs(out_dir)
    dep = Deployment(Path(out_dir), manifest, tree=project_tree(out_dir),
                     parameters_h=struct_lines(out_dir, [structs[h["instance"]] for h in manifest["heads"]]))
    for h in manifest["heads"]:
        rows = bank[h["layer"], h["head"]]
        x = rows.int8(calibration.scale(h["layer"], h["head"]))[:max_rows]  # padded keys are -128
        y, info = emulate_aie4ml(out_dir, x, node=h["node"], write_sim_output=False)
        want = hccs_int(x, calibration.params(h["layer"], h["head"]), out=out, recip=recip)
        diff = int((y != want).any(axis=1).sum())
        dep.heads.append(DeployedHead(h["layer"], h["head"], h["node"], info["params"], len(x), diff == 0, diff,
                                      info["cached"], info["build_seconds"]))
    return dep
