"""Bit-exact numpy execution of a kernel IR over all rows at once.

Integer semantics follow the AIE API: elementwise vector ops wrap in their lane type, multiplies
land in 32- or 64-bit accumulators, and `srs` narrows with the kernel's rounding mode (default
floor) and saturation mode (default none = wrap on the MSB side): exactly what the kernel sets,
nothing more. A loop runs once, over all rows and all trips together: the row [rows, n] is viewed
as [rows, trips, lanes] and every op runs on that; a `Carry` becomes a reduction over the trips
axis (max and wrapping integer add are associative, so the order does not matter).

Float ops (references only) run in float32 and round to bf16 where the kernel narrows; they are an
approximation of the hardware (see kernels.reference_kernel), not bit-exact.
"""
from __future__ import annotations

import numpy as np

from .ir import Kernel, Loop
from ..errors import InputError, InputTypeError

_NP = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
       "bf16": np.float32, "float": np.float32}
_ACC_NP = {"acc32": np.int32, "acc64": np.int64, "accfloat": np.float32}


def _np_type(t):
    return _ACC_NP[t.acc] if t.acc else _NP[t.elem]


def _limits(elem):
    info = np.iinfo(_NP[elem])
    return int(info.min), int(info.max)


def bf16_round(x: np.ndarray, mode: str = "conv_even") -> np.ndarray:
    """float32 -> nearest bf16 value (as float32): ties to even, or away from zero."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    if mode == "conv_even":
        bits = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    elif mode == "symmetric_inf":
        bits = bits + np.uint32(0x8000)
    bits = bits & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


def _bf16_from_bits(b):
    return (np.asarray(b, dtype=np.int64).astype(np.uint32) << np.uint32(16)).astype(np.uint32).view(np.float32)


def srs(acc: np.ndarray, shift: np.ndarray | int, elem: str, rounding: str, saturation: str) -> np.ndarray:
    a = acc.astype(np.int64)
    if np.ndim(shift) == 0 and int(shift) == 0:
        q = a
    else:
        sh = np.asarray(shift, dtype=np.int64)
        if rounding == "floor":
            q = a >> sh
        else:
            half = np.where(sh > 0, np.int64(1) << np.maximum(sh - 1, 0), 0)
            if rounding == "symmetric_inf":  # half away from zero
                q = np.where(a >= 0, (a + half) >> sh, -((-a + half) >> sh))
            else:  # conv_even
                fl = a >> sh
                rem = a - (fl << sh)
                q = fl + ((rem > half) | ((rem == half) & (sh > 0) & ((fl & 1) == 1)))
    lo, hi = _limits(elem)
    if saturation == "saturate":
        return np.clip(q, lo, hi).astype(_NP[elem])
    return q.astype(_NP[elem])  # numpy's astype wraps: the MSB-side truncation of saturation none


class Emulator:
    """Runs one kernel. `run(x)` takes the input rows and returns the output rows."""

    def __init__(self, kernel: Kernel):
        self.k = kernel

    # -- input checks -------------------------------------------------------------------------
    def check_input(self, x) -> np.ndarray:
        k = self.k
        if not isinstance(x, np.ndarray):
            raise InputTypeError(f"input must be a numpy array, got {type(x).__name__}")
        if k.family == "mmul":
            raise InputError(f"{k.name} is a matrix-multiply kernel: the cycle model's subject only, not emulated")
        if x.ndim != 2 or x.shape[1] != k.n:
            raise InputError(f"input must have shape [rows, {k.n}] for this kernel (seq_len {k.n}), got {x.shape}")
        if k.family in ("hccs", "aie4ml"):
            if x.dtype != np.int8:
                raise InputTypeError(f"HCCS kernels take int8 logits, got dtype {x.dtype}")
            return x
        if x.dtype.kind != "f":
            raise InputTypeError(f"reference kernels take float logits, got dtype {x.dtype}")
        xb = bf16_round(x.astype(np.float32))
        if k.input.elem == "int16":  # the tutorial streams bf16 bit patterns as int16
            return (xb.view(np.uint32) >> np.uint32(16)).astype(np.uint16).view(np.int16)
        return xb

    def check_valid_len(self, valid_len, rows: int):
        k = self.k
        if valid_len is None:
            if k.valid_len:
                raise InputError(f"{k.name} takes a per-row valid length: pass valid_len (int, one per row)")
            return None
        if not k.valid_len:
            raise InputError(f"{k.name} was built without valid-length support (build it with valid_len=True)")
        vl = np.asarray(valid_len)
        if vl.dtype.kind not in "iu":
            raise InputTypeError(f"valid_len must hold integers, got dtype {vl.dtype}")
        if vl.shape != (rows,):
            raise InputError(f"valid_len must have shape [{rows}] (one per row), got {vl.shape}")
        if rows and (vl.min() < 0 or vl.max() > k.n):
            raise InputError(f"valid_len must lie in [0, {k.n}], got values in [{vl.min()}, {vl.max()}]")
        return vl.astype(np.int32)

    def run(self, x, valid_len=None) -> np.ndarray:
        k = self.k
        x = self.check_input(x)
        rows = x.shape[0]
        vl = self.check_valid_len(valid_len, rows)
        if k.band > 1:  # a band of `band` rows, stored as its 4 x 8 microtiles one after another
            g, inner = k.band, k.lanes // k.band
            pad = (-rows) % g
            xp = np.concatenate([x, np.zeros((pad, k.n), x.dtype)]) if pad else x
            xin = xp.reshape(-1, g, k.n // inner, inner).transpose(0, 2, 1, 3).reshape(-1, g * k.n)
        else:
            xin = x
        self.rows = xin.shape[0]
        self.bufs = {k.input.name: xin}
        if vl is not None:
            self.bufs[next(b.name for b in k.buffers if b.role == "rowarg")] = vl
        self.vals = {}
        for s in k.body:
            if isinstance(s, Loop):
                self._loop(s, self.rows)
            else:
                self.vals[s.dst] = self._op(s, None, self.rows)
        out = self.bufs[k.output.name]
        if k.band > 1:
            out = out.reshape(-1, k.n // inner, g, inner).transpose(0, 2, 1, 3).reshape(-1, k.n)
            return np.ascontiguousarray(out[:rows])
        return out.reshape(rows, k.n)

    # -- execution ----------------------------------------------------------------------------
    def _loop(self, loop: Loop, rows: int):
        outer = self.vals
        inner = {}
        self.vals = _Scope(outer, inner)
        self.loop = loop
        for o in loop.body:
            r = self._op(o, loop, rows)
            if o.dst:
                inner[o.dst] = r
        for c in loop.carries:
            v, init = inner[c.value], outer[c.init]
            if c.combine in ("max", "fmax"):
                red = v.max(axis=1)
                res = np.maximum(init, red)
            elif c.combine == "add":
                res = (v.sum(axis=1, dtype=np.int64) + init).astype(v.dtype)  # wraps like acc32
            elif c.combine == "mac":
                f = inner[c.factor] if c.factor in inner else self._get(c.factor, loop)
                prod = v.astype(np.int64) * np.asarray(f).astype(np.int64)
                res = (prod.sum(axis=1) + init).astype(init.dtype)
            else:
                res = (v.sum(axis=1, dtype=np.float32) + init).astype(np.float32)
            outer[c.dst] = res
        self.vals = outer

    def _get(self, name, loop):
        v = self.vals[name]
        if loop is not None and name not in self.vals.inner and np.ndim(v) == 2:
            return v[:, None, :]
        return v

    def _op(self, o, loop, rows):
        k = self.k
        a = [self._get(n, loop) for n in o.args]
        t = o.type
        c = o.code
        if c == "load":
            buf = self.bufs[o.buf]
            if loop is None:
                return buf.reshape(rows, -1)[:, : t.lanes]
            return buf.reshape(rows, -1, t.lanes)[:, loop.start:loop.start + loop.trips]
        if c == "row_arg":
            return self.bufs[o.buf].astype(np.int32)
        if c == "lane_mask":  # key index i*lanes + lane below the row's valid length
            idx = (np.arange(loop.trips)[:, None] + loop.start) * t.lanes + np.arange(t.lanes)[None, :]
            return idx[None, :, :] < np.asarray(a[0]).reshape(-1, 1, 1)
        if c == "select":
            return np.where(a[2], a[1], a[0]).astype(_NP[t.elem], copy=False)
        if c in ("seg_reduce_max", "seg_reduce_add"):
            v = a[0].reshape(rows, -1, o.imm[0])
            r = v.max(axis=-1) if c == "seg_reduce_max" else v.sum(axis=-1, dtype=np.int64)
            return r.astype(_NP[t.elem])
        if c == "spread":
            return np.repeat(np.asarray(a[0]).astype(np.int64), o.imm[0], axis=-1).astype(_NP[t.elem])
        if c == "store":
            v = a[0]
            elem = k.buffer(o.buf).elem
            self.bufs[o.buf] = np.ascontiguousarray(v.reshape(rows, -1)).astype(_NP[elem], copy=False)
            return None
        if c in ("const", "sconst"):
            if t.elem in ("bf16", "float"):
                val = _bf16_from_bits(np.int16(o.imm[0]).view(np.uint16))
                return np.full((1,) if t.is_scalar else (1, t.lanes), val, dtype=np.float32)
            dt = _NP[t.elem]
            return np.full((1,) if t.is_scalar else (1, t.lanes), o.imm[0], dtype=np.int64).astype(dt)
        if c == "bcast":
            s = np.asarray(a[0]).astype(_NP[t.elem])
            return np.broadcast_to(s[:, None], (s.shape[0], t.lanes))
        if c == "cast":
            return a[0].view(_NP[t.elem])
        if c in ("max", "min", "sub", "add"):
            f = {"max": np.maximum, "min": np.minimum, "sub": np.subtract, "add": np.add}[c]
            return f(a[0], a[1]).astype(_NP[t.elem], copy=False)
        if c == "ups":
            return a[0].astype(_np_type(t))
        if c in ("mul", "mac"):
            dt = _np_type(t)
            x, y = (a[0], a[1]) if c == "mul" else (a[1], a[2])
            p = x.astype(dt) * y.astype(dt)
            return p if c == "mul" else (a[0].astype(dt) + p)
        if c == "acc_add":
            return a[0] + a[1]
        if c == "srs":
            return srs(a[0], o.imm[0] if o.imm else 0, t.elem, k.rounding, k.saturation)
        if c == "srs_var":
            sh = np.asarray(a[1])
            return srs(a[0], sh.reshape(sh.shape[:1] + (1,) * (np.ndim(a[0]) - 1)), t.elem, k.rounding, k.saturation)
        if c == "reduce_max":
            return a[0].max(axis=-1).astype(_NP[t.elem])
        if c == "reduce_add":
            return a[0].sum(axis=-1, dtype=np.int64).astype(_NP[t.elem])
        if c in ("sdiv", "sdiv_batched"):
            z = np.asarray(a[1]).astype(np.int64)
            if c == "sdiv_batched":  # batched_reciprocal treats a non-positive sum as 1
                z = np.maximum(z, 1)
            elif np.any(z <= 0):
                raise ArithmeticError("kernel divided by a non-positive score sum")
            return (np.asarray(a[0]).astype(np.int64) // z).astype(_NP[t.elem])
        if c == "slog2":
            z = np.asarray(a[0]).astype(np.int64)
            return (np.frexp(z.astype(np.float64))[1] - 1).astype(_NP[t.elem])
        if c in ("sshl", "sshr", "ssub", "smax", "smin", "smul"):
            x, y = np.asarray(a[0]).astype(np.int64), np.asarray(a[1]).astype(np.int64)
            f = {"sshl": np.left_shift, "sshr": np.right_shift, "ssub": np.subtract, "smax": np.maximum,
                 "smin": np.minimum, "smul": np.multiply}[c]
            return f(x, y).astype(_NP[t.elem])
        return self._float_op(o, a)

    def _float_op(self, o, a):
        c, mode = o.code, self.k.rounding
        if c == "to_bf16":
            return _bf16_from_bits(a[0].view(np.uint16))
        if c == "fsub":
            return (a[0] - a[1]).astype(np.float32)
        if c == "fadd":
            return (a[0] + a[1]).astype(np.float32)
        if c == "fmul":
            return (a[0] * a[1]).astype(np.float32)
        if c == "fmac":
            return (a[0] + a[1] * a[2]).astype(np.float32)
        if c == "fmax":
            return np.maximum(a[0], a[1])
        if c == "fsrs":
            return bf16_round(a[0], mode)
        if c == "freduce_max":
            return a[0].max(axis=-1)
        if c == "freduce_add":
            return a[0].sum(axis=-1, dtype=np.float32)
        if c == "finv":
            return bf16_round(1.0 / a[0], mode)
        if c == "exp2":
            return bf16_round(np.exp2(a[0]).astype(np.float32), mode)
        if c == "lut_exp":
            # int16 fixed point with 8 fractional bits, then e^int (LUT 1) times e^(frac/256) (LUT 2)
            fx = np.clip(np.floor(a[0] * 256.0), -32768, 32767).astype(np.int64)
            ip, fr = fx >> 8, fx & 255
            e_int = bf16_round(np.exp(ip.astype(np.float64)).astype(np.float32), mode)
            e_frac = bf16_round(np.exp(fr / 256.0).astype(np.float32), mode)
            return bf16_round(e_int * e_frac, mode)
        if c == "to_fixed":
            v = a[0].astype(np.float64)
            if mode == "symmetric_inf":
                i = np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5))
            elif mode == "conv_even":
                i = np.round(v)
            else:
                i = np.floor(v)
            return np.clip(i, -32768, 32767).astype(np.int16)
        if c == "zero_outside":
            lo, hi = o.imm
            return np.where((a[0] < lo) | (a[0] > hi), 0, a[0]).astype(np.int16)
        raise NotImplementedError(f"emulator has no rule for op {c}")


class _Scope(dict):
    """Name lookup inside a loop: the loop's own values first, then the enclosing ones."""

    def __init__(self, outer, inner):
        super().__init__()
        self.outer, self.inner = outer, inner

    def __getitem__(self, name):
        return self.inner[name] if name in self.inner else self.outer[name]

    def __contains__(self, name):
        return name in self.inner or name in self.outer


def emulate_kernel(kernel: Kernel, x, valid_len=None) -> np.ndarray:
    """Run `kernel` on rows `x` ([rows, n]; int8 for HCCS and aie4ml, float for references);
    `valid_len` (one int per row) for kernels built with valid-length support."""
    return Emulator(kernel).run(x, valid_len)
