"""Print a kernel IR as AIE API C++ (aie::vector, aie::accum, aie::mac, aie::reduce_max, ...).

Output per kernel: `<name>.cc` (the kernel), `hccs_params.h` (the head's compile-time constants)
and `kernel.json` (the manifest `hccs-lab emulate` reads back). Every name printed comes from the
IR, whose identifiers were validated at construction; numbers are printed from Python ints. The
same source compiles for the AI Engine (`<aie_api/aie.hpp>`) and on the host against
`kernels/aie_api_shim.hpp` when `HCCS_HOST_SHIM` is defined.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..io import write_text
from .ir import Kernel, Loop, Op, VType
from ..errors import InputError

FORMAT = "hccs-lab-kernel"
FORMAT_VERSION = 1
_BUF_PTR = {"in": "in_row", "out": "out_row", "scratch": "scratch_row"}


def _ctype(t: VType) -> str:
    elem = {"int8": "int8", "uint8": "uint8", "int16": "int16", "int32": "int32"}[t.elem]
    if t.acc:
        return f"aie::accum<{t.acc}, {t.lanes}>"
    if t.is_scalar:
        return elem
    return f"aie::vector<{elem}, {t.lanes}>"


def _elem(t: VType) -> str:
    return {"int8": "int8", "uint8": "uint8", "int16": "int16", "int32": "int32"}[t.elem]


class _Printer:
    """Prints the IR for R rows at once: every row-dependent statement once per row (suffix _rN),
    constants once. R > 1 lets grouped reductions share their tree across the rows."""

    def __init__(self, k: Kernel, rows: int):
        self.k, self.R = k, rows
        self.types: dict = {}
        self.consts: set = set()
        self.lines: list[str] = []

    def nm(self, name: str, r: int) -> str:
        if name in self.consts or self.R == 1:
            return name
        return f"{name}_r{r}"

    def ptr(self, buf: str, r: int) -> str:
        base = _BUF_PTR[self.k.buffer(buf).role]
        return base if self.R == 1 else f"{base[:-4]}_r{r}"  # in_row -> in_r0

    def acc_reduce(self, o: Op, ind: str, r: int):
        """reduce_add of an accumulator as the cycle model lowers it: halves added in the
        accumulator file down to 16 lanes, one to_vector<int32>, then the vector reduce_add."""
        src = self.types[o.args[0]]
        cur, lanes = self.nm(o.args[0], r), src.lanes
        dst = self.nm(o.dst, r)
        while lanes > 16:
            half = lanes // 2
            nxt = f"{o.dst}_a{half}" + (f"_r{r}" if self.R > 1 else "")
            self.lines.append(f"{ind}aie::accum<{src.acc}, {half}> {nxt} = "
                              f"aie::add({cur}.extract<{half}>(0), {cur}.extract<{half}>(1));")
            cur, lanes = nxt, half
        self.lines.append(f"{ind}{_ctype(o.type)} {dst} = aie::reduce_add({cur}.to_vector<int32>(0));")

    def stmt(self, o: Op, ind: str, idx: str):
        if o.dst:
            self.types[o.dst] = o.type
        if o.code in ("const", "sconst"):
            self.consts.add(o.dst)
            self._one(o, ind, idx, 0)
        elif o.code in ("reduce_max", "reduce_add") and o.group > 1 and o.group == self.R:
            self._group_reduce(o, ind)
        elif o.code == "reduce_add" and self.types[o.args[0]].acc:
            for r in range(self.R):
                self.acc_reduce(o, ind, r)
        else:
            for r in range(self.R):
                self._one(o, ind, idx, r)

    def _one(self, o: Op, ind: str, idx: str, r: int):
        t, c = o.type, o.code
        a = [self.nm(x, r) for x in o.args]
        dst = self.nm(o.dst, r) if o.dst else None
        L = self.k.lanes
        if c == "load":
            rhs = f"aie::load_v<{t.lanes}>({self.ptr(o.buf, r)} + {idx} * {L})"
        elif c == "store":
            self.lines.append(f"{ind}aie::store_v({self.ptr(o.buf, r)} + {idx} * {L}, {a[0]});")
            return
        elif c == "const":
            rhs = f"aie::broadcast<{_elem(t)}, {t.lanes}>({o.imm[0]})"
        elif c == "sconst":
            rhs = f"{o.imm[0]}"
        elif c == "bcast":
            rhs = f"aie::broadcast<{_elem(t)}, {t.lanes}>(static_cast<{_elem(t)}>({a[0]}))"
        elif c == "cast":
            rhs = f"{a[0]}.cast_to<{_elem(t)}>()"
        elif c in ("max", "min", "sub", "add"):
            rhs = f"aie::{c}({a[0]}, {a[1]})"
        elif c == "ups":
            self.lines.append(f"{ind}{_ctype(t)} {dst};")
            self.lines.append(f"{ind}{dst}.from_vector({a[0]}, 0);")
            return
        elif c == "mul":
            rhs = f"aie::mul<{t.acc}>({a[0]}, {a[1]})"
        elif c == "mac":
            rhs = f"aie::mac({a[0]}, {a[1]}, {a[2]})"
        elif c == "acc_add":
            rhs = f"aie::add({a[0]}, {a[1]})"
        elif c == "srs":
            rhs = f"{a[0]}.to_vector<{_elem(t)}>({o.imm[0] if o.imm else 0})"
        elif c == "srs_var":
            rhs = f"{a[0]}.to_vector<{_elem(t)}>({a[1]})"
        elif c == "reduce_max":
            rhs = f"aie::reduce_max({a[0]})"
        elif c == "reduce_add":
            rhs = f"aie::reduce_add({a[0]})"
        elif c == "row_arg":
            rhs = f"vlens[{r}]"
        elif c == "lane_mask":  # keys i*L .. i*L+L-1 of this slice that lie below the valid length
            self.lines.append(f"{ind}const aie::mask<{t.lanes}> {dst} = aie::lt(aie::load_v<{t.lanes}>(hccs_iota), "
                              f"aie::broadcast<int8, {t.lanes}>(hccs_left({a[0]}, {idx}, {t.lanes})));")
            return
        elif c == "select":
            rhs = f"aie::select({a[0]}, {a[1]}, {a[2]})"
        elif c == "sdiv":
            rhs = f"{a[0]} / {a[1]}  /* no divide unit: a software routine */"
        elif c == "slog2":
            rhs = f"31 - clb({a[0]})  /* floor(log2) by count-leading-bits */"
        elif c == "sshl":
            rhs = f"{a[0]} << {a[1]}"
        elif c == "sshr":
            rhs = f"{a[0]} >> {a[1]}"
        elif c == "ssub":
            rhs = f"{a[0]} - {a[1]}"
        elif c == "smax":
            rhs = f"{a[0]} > {a[1]} ? {a[0]} : {a[1]}"
        else:
            raise NotImplementedError(f"the C++ emitter covers the HCCS kernels; op {c} is reference-only")
        q = "const " if c in ("const", "sconst") else ""
        self.lines.append(f"{ind}{q}{_ctype(t)} {dst} = {rhs};")

    def _group_reduce(self, o: Op, ind: str):
        """Each row halves to P = (512-bit lanes) / R lanes, the R partials are packed into one
        register and reduced per P-lane segment with shuffle_down; row r's result is lane r*P."""
        src = self.types[o.args[0]]
        is_add = o.code == "reduce_add"
        fn = "aie::add" if is_add else "aie::max"
        elem = "int32" if src.acc else _elem(src)
        P = (512 // (32 if src.acc else {"int8": 8, "uint8": 8, "int16": 16, "int32": 32}[src.elem])) // self.R
        self.lines.append(f"{ind}// {o.code} of {self.R} rows with one shared tree tail ({P} lanes per row)")
        parts = []
        for r in range(self.R):
            cur, lanes = self.nm(o.args[0], r), src.lanes
            if src.acc:
                while lanes > 16:  # halve in the accumulator file down to 512 bits
                    half = lanes // 2
                    nxt = f"{o.dst}_a{half}_r{r}"
                    self.lines.append(f"{ind}aie::accum<{src.acc}, {half}> {nxt} = "
                                      f"aie::add({cur}.extract<{half}>(0), {cur}.extract<{half}>(1));")
                    cur, lanes = nxt, half
                nxt = f"{o.dst}_v_r{r}"
                self.lines.append(f"{ind}aie::vector<int32, {lanes}> {nxt} = {cur}.to_vector<int32>(0);")
                cur = nxt
            while lanes > P:
                half = lanes // 2
                nxt = f"{o.dst}_h{half}_r{r}"
                self.lines.append(f"{ind}aie::vector<{elem}, {half}> {nxt} = "
                                  f"{fn}({cur}.extract<{half}>(0), {cur}.extract<{half}>(1));")
                cur, lanes = nxt, half
            parts.append(cur)
        pk = f"{o.dst}_pk"
        self.lines.append(f"{ind}aie::vector<{elem}, {P * self.R}> {pk} = aie::concat({', '.join(parts)});")
        step = P // 2
        while step >= 1:
            self.lines.append(f"{ind}{pk} = {fn}({pk}, aie::shuffle_down({pk}, {step}));")
            step //= 2
        for r in range(self.R):
            self.lines.append(f"{ind}{_ctype(o.type)} {self.nm(o.dst, r)} = {pk}.get({r * P});")

    def body(self):
        k = self.k
        for s in k.body:
            if isinstance(s, Loop):
                for c in s.carries:
                    t = self.types[c.init]
                    self.types[c.dst] = t
                    for r in range(self.R):
                        self.lines.append(f"    {_ctype(t)} {self.nm(c.dst, r)} = {self.nm(c.init, r)};")
                prag = f"chess_unroll_loop({s.trips})" if s.unroll else "chess_prepare_for_pipelining"
                self.lines.append(f"    // {s.label}: {s.trips} x {k.lanes} lanes")
                self.lines.append(f"    for (int i = 0; i < {s.trips}; ++i) {prag} {{")
                for o in s.body:
                    self.stmt(o, "        ", "i")
                for c in s.carries:
                    fn = {"max": "aie::max", "add": "aie::add"}[c.combine]
                    for r in range(self.R):
                        d, v = self.nm(c.dst, r), self.nm(c.value, r)
                        self.lines.append(f"        {d} = {fn}({d}, {v});")
                self.lines.append("    }")
            else:
                self.stmt(s, "    ", "0")

    def function(self, fname: str) -> list[str]:
        self.body()
        R = self.R
        vl = ", const int32* __restrict vlens" if self.k.valid_len else ""
        if R == 1:
            head = ["    const int8* __restrict in_row = logits;", "    HCCS_OUT_T* __restrict out_row = probs;",
                    "    int16* __restrict scratch_row = scratch;"]
        else:
            head = []
            for r in range(R):
                head += [f"    const int8* __restrict in_r{r} = logits + {r} * HCCS_SEQ_LEN;",
                         f"    HCCS_OUT_T* __restrict out_r{r} = probs + {r} * HCCS_SEQ_LEN;",
                         f"    int16* __restrict scratch_r{r} = scratch + {r} * HCCS_SEQ_LEN;"]
        return [f"// {R} row(s): logits/probs/scratch hold {R} consecutive rows of HCCS_SEQ_LEN",
                f"static inline __attribute__((always_inline)) void {fname}(",
                f"    const int8* __restrict logits, HCCS_OUT_T* __restrict probs, int16* __restrict scratch{vl}) {{",
                *head, *self.lines, "}", ""]


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("hccs-lab")
    except Exception:  # running from a source tree without an install
        return "0.0.0+unknown"


@dataclass
class Emitted:
    kernel: Kernel
    files: dict      # file name -> text
    manifest: dict


def emit(k: Kernel, version: str | None = None) -> Emitted:
    if k.family != "hccs":
        raise NotImplementedError("C++ emission covers the HCCS kernels; the bf16 references are cycle-model subjects")
    __version__ = _package_version()
    out_t = _elem(VType(k.output.elem, 1))
    R = k.rows_per_iter
    p = k.params
    header = "\n".join([
        "// Generated by hccs_lab: per-head compile-time constants. Do not edit.",
        "#pragma once",
        f"#define HCCS_SEQ_LEN {k.n}",
        f"#define HCCS_LANES {k.lanes}",
        f"#define HCCS_ROWS_PER_ITER {R}",
        f"#define HCCS_B {p['B']}",
        f"#define HCCS_S {p['S']}",
        f"#define HCCS_D {p['D']}",
        f"#define HCCS_OUT_T {out_t}",
        f"#define HCCS_ENTRY {k.name}",
        f'#define HCCS_ARCH "{k.arch}"',
        "",
    ])
    funcs = _Printer(k, R).function(f"hccs_rows{R}")
    if R > 1:
        funcs += _Printer(k, 1).function("hccs_rows1")
    vl = k.valid_len
    slots = k.buffer("scores").slots
    if vl:
        funcs = [f"alignas(64) static const int8 hccs_iota[{k.lanes}] = {{{', '.join(str(i) for i in range(k.lanes))}}};",
                 "// keys of slice i (lanes wide) that lie below the valid length: clamp(vlen - i*lanes, 0, lanes)",
                 "static inline int8 hccs_left(int32 vlen, int i, int lanes) {",
                 "    const int32 t = vlen - i * lanes;",
                 "    return static_cast<int8>(t < 0 ? 0 : (t > lanes ? lanes : t));",
                 "}", "", *funcs]
    arg = ", const int32* __restrict valid_len" if vl else ""
    pass_vl = ", valid_len + row" if vl else ""
    if slots > 1:
        scratch_decl = f"    alignas(64) static int16 scratch[{slots} * {R} * HCCS_SEQ_LEN];  // two copies, alternated by trip"
        scr = f"scratch + ((row / {R}) & 1) * {R} * HCCS_SEQ_LEN"
    else:
        scratch_decl = f"    alignas(64) static int16 scratch[{R} * HCCS_SEQ_LEN];"
        scr = "scratch"
    src = "\n".join([
        f"// Generated by hccs_lab {version or __version__}: HCCS {k.variant}, schedule {k.schedule}, {k.arch}, n={k.n}.",
        f"// Head parameters B={p['B']} S={p['S']} D={p['D']} are compile-time constants (hccs_params.h).",
        "// The same source builds for the AI Engine and, with HCCS_HOST_SHIM, on the host.",
        "#ifdef HCCS_HOST_SHIM",
        '#include "aie_api_shim.hpp"',
        "#else",
        "#include <aie_api/aie.hpp>",
        "#endif",
        '#include "hccs_params.h"',
        "",
        *funcs,
        f"// Processes `rows` rows of HCCS_SEQ_LEN int8 logits; {R} row(s) per trip of the row loop."
        + (" valid_len[r]: keys of row r at or past it get 0 and take no part in the max or the sum." if vl else ""),
        f"void {k.name}(const int8* __restrict logits, HCCS_OUT_T* __restrict probs{arg}, int rows) {{",
        f"    aie::set_rounding(aie::rounding_mode::{k.rounding});",
        f"    aie::set_saturation(aie::saturation_mode::{k.saturation});",
        scratch_decl,
        "    int row = 0;",
        f"    for (; row + {R} <= rows; row += {R}) chess_prepare_for_pipelining",
        f"        hccs_rows{R}(logits + row * HCCS_SEQ_LEN, probs + row * HCCS_SEQ_LEN, {scr}{pass_vl});",
        *([ "    for (; row < rows; ++row)",
            f"        hccs_rows1(logits + row * HCCS_SEQ_LEN, probs + row * HCCS_SEQ_LEN, scratch{pass_vl});"] if R > 1 else []),
        "}",
        "",
    ])
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "hccs_lab_version": version or __version__,
        "variant": k.variant, "arch": k.arch, "seq_len": k.n, "lanes": k.lanes, "schedule": k.schedule,
        "rows_per_iter": R, "params": {"B": p["B"], "S": p["S"], "D": p["D"]},
        "entry": k.name, "output_dtype": out_t, "input_dtype": "int8",
        "rounding": k.rounding, "saturation": k.saturation, "notes": k.notes,
        "files": {"source": f"{k.name}.cc", "header": "hccs_params.h"},
    }
    if vl:  # only kernels that take valid lengths carry the flag (others keep their manifest)
        manifest["valid_len"] = True
    return Emitted(k, {f"{k.name}.cc": src, "hccs_params.h": header}, manifest)


def write_kernel_dir(em: Emitted, out_dir) -> Path:
    """Write sources, then the manifest last (a dir with a manifest is complete)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in em.files.items():
        write_text(out / name, text)
    write_text(out / "kernel.json", json.dumps(em.manifest, indent=2) + "\n")
    return out
