"""Machine descriptions of one AIE-ML / AIE-MLv2 tile, as the compiler describes them.

Every number carries its source. Most come from the open AIE compiler `Xilinx/llvm-aie` (AIE-ML
is "AIE2" there, AIE-MLv2 is "AIE2P"), its scheduling model `aie2/AIE2Schedule.td` (line of each
itinerary class in brackets), its slot and register definitions, its compiler-rt builtins, its
loop and pipeliner options, and from the open AIE API headers `Xilinx/aie_api`
(`include/aie_api/detail/aie2/`); the project's digest of them is `reference/aie_timing.md`.
What no source states is an [assumption]; all of them are listed in `ASSUMPTIONS`, which the
benchmark and `hccs-lab cycles` print. `RULES` is the rule set the lowering and scheduler apply,
printed the same way: a rule changes only when a cited fact does, never to fit a published figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import InputError

# VLIW slots (aie2/AIE2Slots.td, AIE2CompositeFormats.td): per cycle two loads (lda, ldb), one
# store (st; SRS, pack and bf16 conversion share it), one scalar ALU (alu), one move (mv: every
# vector-register ALU op, compare, select, shuffle, broadcast, extract, UPS), one vector (vec:
# multiply, MAC, accumulator add). The 42-bit lng slot (loop setup MOVXM) replaces alu + mv.
# Stream ports are the tile's AXI4-stream interfaces (the Vitis tutorial streams in and out).
SLOTS = ("ld", "st", "alu", "mv", "vec", "lng", "stream_in", "stream_out")


@dataclass(frozen=True)
class Machine:
    name: str
    # VE2802 -2 grade FMAX 1250 MHz (DS958); the AIE-ML tutorial's rates imply 1.0 / 1.25 GHz
    # (aie.md §3.3); AM027 gives AIE-MLv2 1 GHz at -1. The paper's table reads as 1.25 GHz
    # (29 cycles/row at n=32 = 1.38 G/s, paper.md §4.5).
    clock_ghz: float = 1.25
    ports: dict = field(default_factory=lambda: {"ld": 2, "st": 1, "alu": 1, "mv": 1, "vec": 1, "lng": 1,
                                                 "stream_in": 1, "stream_out": 1})
    # AIE2InstrInfo::getMaxLoadStoreSize: 256 bits; a 512-bit access is two of them
    mem_bits: int = 256
    alu_bits: int = 512          # vector registers x0-11 are 512-bit; one mv op per 512-bit register
    acc_reg_bits: int = 1024     # cm0-8: one VUPS / VADD acc writes a 1024-bit accumulator
    stream_bits: int = 32        # UG1603: stream switch "32-bit for AIE-ML" (64-bit on AIE-ML v2)
    # latencies (AIE2Schedule.td; def cycle - use cycle + 1, minus 1 on a shared bypass)
    lat_load: int = 7            # VLDA / VLDB (834 / 894)
    lat_valu: int = 2            # VADD/VSUB/VBAND (776-786), VMAX_LT.. (953-959), VSEL/VSHUFFLE/VSHIFT (1116-1122)
    lat_valu_chained: int = 1    # the MOV bypass into a following vector-ALU op
    lat_bcast: int = 2           # VBCST (788), VINSERT (811), VEXTRACT (796)
    lat_ups: int = 3             # VUPS (1156)
    lat_mul: int = 5             # VMUL / VMAC (1028 / 951)
    lat_acc_chain: int = 2       # VMAC reads its accumulator at cycle 3; acc VADD (757) 2 in an acc chain
    lat_srs: int = 4             # VSRS (1042), in the st slot
    lat_pack: int = 2            # VPACK (1153), st
    lat_scalar: int = 1          # scalar ADD/SUB/shifts/CLB/compares/SEL (444-657)
    lat_smul: int = 2            # scalar MUL (639)
    lat_fp: int = 6              # VMUL.f / VMAC.f / VADD.f (1032 / 974 / 760)
    lat_fp_chain: int = 4        # float accumulator chain
    lat_conv: int = 2            # VCONV bf16 <- fp32 (1105, st) and fp32 <- bf16 (1112, mv)
    lat_store_load: int = 2      # [assumption] a VST's data readable by a VLDA issued 2 cycles later
    lat_stream: int = 2          # [assumption] a stream read's data usable 2 cycles after its issue
    # mul/mac lanes per instruction (aie_api mul_acc32.hpp: one VMUL/VMAC per 32 lanes of 8- or
    # 16-bit operands into acc32; mul_acc64.hpp: mul_elem_16_2 16 lanes for 16x16 into acc64,
    # mul_elem_8_2 8 lanes when an operand is 32-bit)
    mul_lanes_acc32: int = 32
    mul_lanes_acc64_16: int = 16
    mul_lanes_acc64_32: int = 8
    macs_per_cycle_int8: int = 256   # AM020: 256 int8 x int8 MACs per cycle (mmul 4x8x8, one VMAC)
    mmul_shape: tuple = (4, 8, 8)    # aie_api mmul_8_8.hpp: the AIE-ML int8 x int8 native shape
    fp_lanes: int = 16               # tutorial: "floating-point multiply unit processes vectors with 16 lanes"
    lut_parallel: int = 4            # UG1603: "four parallel accesses of aie::lut" on AIE-ML
    native_exp2: bool = False        # aie::exp2 only on XDNA2 / AIE-MLv2 (UG1529)
    scalar_inv: bool = False         # AM020: AIE-ML removed the scalar inverse; AIE2P has an INV itinerary
    # compiler-rt/lib/builtins/aie2/aie2_div.h: udivmod runs 32 x __builtin_aiev2_divstep (DIVS,
    # alu, 1 cycle each, serially dependent); __divsi3 adds abs / sign fix-up; JL and RET have
    # 5 delay slots each (filled by the routine's own abs and fix-up). 32 + 2 x (1 + 5) + 1 = 45.
    div_steps: int = 32
    call_cycles: int = 13            # JL + 5 delay slots, RET + 5 delay slots, one fix-up bundle
    # [assumption] AIE-ML has no FPU (AM020: "Supported through emulation"): a scalar float
    # compare is a compiler-rt call (__gtsf2: unpack, compare, select, ~8 ALU ops) and a float
    # division (__divsf3) ~100 dependent scalar ops (unpack, normalise, three Newton steps on
    # 32-bit multiplies, round, pack) on the one scalar ALU.
    soft_fcmp_ops: int = 8
    soft_fdiv_ops: int = 100
    scalar_inv_cycles: int = 8       # [assumption] AIE2P's scalar INV itinerary, latency not read
    fconv_ops: int = 12              # [assumption] AIE-ML: int<->float scalar conversion in software
    # loops: AIE2 zero-overhead loops write LC/LS/LE from the lng slot; LoopSetupDistance = 7
    # bundles between the last setup bundle and the loop-end label (AIE2InstrInfo). No per-trip cost.
    loop_setup_distance: int = 7
    # J/JNZ/JNZD: 5 delay slots (AIE2Schedule.td); a loop that is not a ZOL ends in one branch
    # whose delay slots its own body fills [assumption: fully]
    branch_issues: int = 1
    # software pipelining (llvm-aie): pre-RA AIEBasePipelinerLoopInfo refuses schedules with more
    # than 3 stages (aie-pipeliner-max-stagecount = 3); the post-RA pipeliner tries II from ResMII
    # up to aie-postpipeliner-maxii = 40, then gives up (PipeliningFailed)
    max_stages: int = 3
    max_ii: int = 40
    # register files (aie2/AIE2GenRegisterInfo.td): 24 x 256-bit vector (w), 36 x 256-bit
    # accumulator halves (am) = 9 x 1024-bit cm; counted in 256-bit units
    vreg_units: int = 24
    areg_units: int = 36
    # [assumption] a kernel invoked once per row (the references) pays a call, lock acquire and
    # release and buffer-pointer setup on entry: JL/RET (13, as for the division) plus two
    # lock instructions and their waits, ~20 cycles in all
    invoke_cycles: int = 20

    def with_clock(self, ghz: float) -> "Machine":
        if not ghz > 0:
            raise InputError(f"clock must be positive, got {ghz}")
        return replace(self, clock_ghz=float(ghz))

    @property
    def div_cycles(self) -> int:
        """A scalar integer division (__divsi3): the 32 divide steps plus call, return and fix-up."""
        return self.div_steps + self.call_cycles


AIE_ML = Machine("aie-ml")
# AIE-MLv2 = AIE2P (aie.md §0, aie_timing.md): same slots; VMAC 6 with its accumulator read at
# cycle 4 (aie2p/AIE2PGenSchedule.td), so acc chains stay 2 apart; accumulators 10 x 1024-bit
# (aie2p/AIE2PRegisterInfo.td: 20 x 512-bit bm = 40 units); vectors 24 x 256-bit as on AIE2;
# 32-lane bf16 (mlir-aie AIE_BF16_LANES 32); eight parallel LUT accesses (UG1603 2026.1);
# native exp2 (UG1529); a scalar INV itinerary; 64-bit streams (UG1603); 512 int8 MACs per
# cycle as 8x8x8 mmul (mlir-aie npu2 microkernel dims, aie.md §1.1 [inference]).
AIE_MLV2 = replace(AIE_ML, name="aie-mlv2", lat_mul=6, fp_lanes=32, lut_parallel=8, native_exp2=True,
                   scalar_inv=True, stream_bits=64, areg_units=40, macs_per_cycle_int8=512,
                   mmul_shape=(8, 8, 8))
MACHINES = {"aie-ml": AIE_ML, "aie-mlv2": AIE_MLV2}


def machine_for(arch: str, clock_ghz: float | None = None) -> Machine:
    if arch not in MACHINES:
        raise InputError(f"arch must be one of {tuple(MACHINES)}, got {arch!r}")
    m = MACHINES[arch]
    return m if clock_ghz is None else m.with_clock(clock_ghz)


# The rules the model applies, in the order a kernel meets them (printed by the benchmark and by
# `hccs-lab cycles`). Each names its source; none was chosen to fit a published figure.
RULES = (
    "slots: per cycle 2 loads (lda/ldb), 1 st, 1 alu, 1 mv, 1 vec; lng (loop setup) replaces alu+mv "
    "[AIE2Slots.td]",
    "memory: 256 bits per load or store issue; 512-bit = 2, 1024-bit = 4 [getMaxLoadStoreSize]",
    "vector ALU, compare, select, shuffle, shift, broadcast, extract, insert, UPS: mv slot, one issue "
    "per 512-bit register, latency 2 (1 chained into another vector-ALU op); UPS 3 [AIE2Schedule.td]",
    "mul/mac: vec slot, one per 32 lanes into acc32 (16 lanes 16x16->acc64, 8 lanes with a 32-bit "
    "operand), latency 5 (AIE-MLv2 6), accumulator chains 2 apart [AIE2Schedule.td, mul_acc32/64.hpp]",
    "accumulator add: vec slot, one per 1024-bit accumulator, latency 5, 2 in an acc chain",
    "to_vector (SRS): st slot, one per min(512/out bits, 1024/acc bits) lanes (acc32->int8: 32), "
    "latency 4 [accum.hpp to_vector_sign, AIE2Schedule.td 1042]",
    "reduce_max/add: registers combined pairwise first, then log2(lanes) rounds of shift_bytes + op "
    "in one 512-bit register, then lane 0 (all mv); int8/int16 reduce_add: 2 rounds, mul+mac with "
    "ones (vec), SRS (st), lane 0 [max_min_reduce.hpp, add_reduce.hpp]",
    "accumulator reductions (our kernels): halves added in the accumulator file (vec) down to 512 bits, "
    "one SRS to int32, then the int32 tree; several interleaved rows may share the tree's last rounds "
    "(each halves privately, the partials are packed into one register)",
    "scalar ops: alu, latency 1 (MUL 2); integer division = call to __divsi3: 32 DIVS steps + "
    "JL/RET with 5 delay slots + fix-up = 45 cycles; a call is a scheduling barrier and blocks "
    "software pipelining [aie2_div.h, AIE2TTIImpl::isHardwareLoopProfitable]",
    "float (references): vec slot per 16 lanes (AIE-MLv2 32), latency 6, float acc chain 4; "
    "bf16<-fp32 conversion st 2, fp32<-bf16 mv 2; AIE-ML scalar float ops are compiler-rt calls",
    "loops: a loop with an unroll pragma (our flattened schedules), a single trip, or a compile-time "
    "trip count <= 32 whose unrolled size (one unit per API op) is <= 200 is fully unrolled "
    "[AIE2TTIImpl::getUnrollingPreferences: FullUnrollMaxCount 32, aie-unroll-max-cost 200]; any "
    "other loop is software-pipelined in place: II = max(busiest slot, recurrence, ceil(trip latency "
    "/ min(3 stages, trips))); each entry pays a lng setup bundle 7 bundles before the loop end "
    "[LoopSetupDistance, aie-pipeliner-max-stagecount]",
    "row loop: software-pipelined only when its body holds no loop, no call and no branch; the "
    "smallest II from the busiest slot up whose modulo schedule has <= 3 stages, keeps each scratch "
    "row's next-trip stores after this trip's loads, and fits the registers; no such II <= 40 and "
    "rows run back to back [aie-pipeliner-max-stagecount = 3, aie-postpipeliner-maxii = 40]",
    "registers: live 256-bit units of every value (plus loop-invariant constants) against 24 vector "
    "and 36 (AIE-MLv2 40) accumulator units; a schedule that does not fit takes a longer II, and if "
    "no II <= 40 fits, spills its longest-lived values (one store + one reload each) "
    "[AIE2GenRegisterInfo.td, canAcceptII register tracking]",
    "mmul (attention matmuls): one VMAC per 4x8x8 int8 tile product (AIE-MLv2 8x8x8), 2x2 output "
    "tiles per step so loads (3 x 256 bits per product) stay under the vec slot",
)

ASSUMPTIONS = (
    "a VST's data is readable by a load issued 2 cycles later (no itinerary states store-to-load)",
    "a stream read's data is usable 2 cycles after issue; 32-bit (AIE-ML) / 64-bit (AIE-MLv2) per cycle",
    "AIE-ML scalar float: a compare costs a call (13) + 8 ALU ops; a division 13 + 100 ALU ops; an "
    "int<->float conversion 12 ALU ops (compiler-rt soft-float shape; no measured figure)",
    "AIE-MLv2 scalar INV: 8 cycles (the itinerary exists; its latency was not read)",
    "AIE-MLv2 native exp2: vec slot, 32 lanes, latency 6 (as a float multiply)",
    "a parallel LUT fetch (load_lut_2x) occupies both load ports for one cycle per 16 lanes, latency 7",
    "a not-flattened row loop ends in one branch whose 5 delay slots its body fills",
    "a kernel invoked once per row (the references) pays ~20 cycles of call, locks and buffer setup",
    "vector register pressure counted in 256-bit units over whole lifetimes (def issue to last use); "
    "register classes (x/y pairing, bank parity) are not modelled",
    "loads that only feed later consumers are sunk to just before their first use (what a "
    "register-pressure-aware scheduler does); every other op issues as early as it can",
    "memory-bank conflicts are not modelled (two loads in one cycle always proceed)",
    "AIE-MLv2 keeps AIE2's load width (256 bits per issue) and latencies where AIE2P's were not read",
)
