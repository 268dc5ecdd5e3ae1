"""What SpIEL keeps per tuned entry, per candidate and per layer: the one place the cost model
restates the library's layout (``sft.layer``, ``sft.kernels``, ``sft.optim``,
``sft.estimation``, ``sft.selection``), so that when the library's layout changes, one entry
here changes with it.

Three layouts are priced:

- ``"plans"``: the library as the first H200 run measured it (docs/benchmarks.md, GPU
  section): every SFT layer kept a delta-gradient kernel plan at rest, an int32 ``grown_at``
  beside SftAdamW's own int32 age, and the optimizers and the reselection looped over the
  layers one by one in Python, syncing with the host per matrix.
- ``"compact"`` (the default): issue 21's layout. No per-entry plan at rest (indices stay
  sorted, the dense path gathers at the int32 indices), one int16 age per entry, SFT-AG's
  estimation statistics without a candidate plan, multi-tensor (foreach) optimizer kernels
  over all SFT layers, the reselection batched over matrices of one shape, and no saved copy
  of the layers' inputs (``sft.rebuild`` recomputes them in the backward).
- ``"paper"``: the paper's own code, for the comparison with its Table 3.

Every byte count is per tuned entry (the values themselves, fp32 or bf16, are counted as the
trainable parameters, not here); every op count is per SFT layer per step (counted with a
``TorchDispatchMode`` on a one-layer model for ``"plans"``, ops that launch a kernel only:
views, ``t`` and ``detach`` launch none).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SpielLayout:
    name: str
    index: int              # the flat row-major index into W, int32 (every matrix < 2^31 entries)
    age: int                # the reselection at which the entry was grown (selection and bias correction)
    adamw: int              # SftAdamW's state per entry beyond ``age``
    sm3: int                # SftSM3's state per entry (its accumulators are per row and column)
    plan_sddmm: int         # kernel plan at rest per entry when the SDDMM path is chosen
    plan_dense: int         # kernel plan at rest per entry when the dense path is chosen
    plan_row: int           # kernel plan at rest per row of W (CSR row pointers), SDDMM path
    candidate: int          # SFT-AG's estimation phase, per candidate (K = k)
    candidate_plan: int     # the candidates' own kernel plan, per candidate, SDDMM path
    candidate_plan_dense: int  # the same on the dense path
    pick_fp32_copy: bool    # the candidate pick holds an fp32 copy of a bf16 dense dW
    pick_abs_fp32: bool     # |dW| for the top-K pick is fp32 (else dW's own dtype)
    forward_ops: int        # kernels one SFT layer launches per forward beyond the frozen matmul
    backward_ops: int       # the same per backward (beyond the input-gradient matmul and dW's GEMM)
    adamw_ops_per_layer: int  # kernels SftAdamW launches per SFT layer per step
    sm3_ops_per_layer: int    # kernels SftSM3 launches per SFT layer per step
    adamw_ops_per_chunk: int  # kernels SftAdamW launches per step and chunk of its entries
    sm3_ops_per_chunk: int    # the same for SftSM3, plus ``sm3_ops_per_shape`` per matrix shape in it
    sm3_ops_per_shape: int
    bf16_values_ops_per_chunk: int  # more per chunk with bf16 deltas (qSFT): casts to fp32 and back
    reselection_unit: str   # "matrix": one host-synced pass per matrix; "shape": per distinct shape
    optimizer_unit: str     # what an optimizer step works on at once: "chunk" (multi-tensor) or "matrix"
    adamw_step_transient: int  # bytes SftAdamW's step holds per entry of that unit at its peak
    sm3_step_transient: int    # SftSM3's per entry of the matrices of one shape in that unit
    in_place_delta: bool = True  # W + Delta patched into a plain W of the compute dtype (no copy)
    rebuilds_inputs: bool = False  # the backward rebuilds each layer's input (sft.rebuild), not saved


LAYOUTS = {
    "plans": SpielLayout(
        "plans", index=4, age=4,            # sft.layer: indices int32, grown_at int32
        adamw=4 + 4 + 4,                    # exp_avg, exp_avg_sq fp32 and SftAdamW's own int32 age
        sm3=0,                              # row and column accumulators only (momentum 0)
        plan_sddmm=8 + 4 + 8,               # CSR int64 columns, fp32 placeholder values, int64 order
        plan_dense=8,                       # int64 flat indices to gather from dW
        plan_row=8,                         # CSR int64 row pointers
        candidate=4 + 4 + 4 + 4,            # int32 candidates, step gradient, sum, sum of squares
        candidate_plan=8 + 4,               # the candidates' CSR columns and placeholder values
        # dense path: the int64 copy of the (int32) candidates to gather from dW; found by
        # tracing that library's allocations on CPU (docs/benchmarks.md, GPU section)
        candidate_plan_dense=8,
        pick_fp32_copy=True, pick_abs_fp32=True,
        # forward: indices.long(), W's entries gathered, fp32 add, cast back, W patched and
        # restored (2 index_copy_); backward: the same 7 again (W + Delta for the input
        # gradient) plus dY^T cast, the gather from dW, the cast of the gradient to fp32 and
        # its accumulation. SftAdamW 17 kernels per tensor, SftSM3 15 (int64 rows and columns,
        # two gathers, two scatter-max, ...); both counted at the steady state (state made).
        forward_ops=7, backward_ops=11, adamw_ops_per_layer=17, sm3_ops_per_layer=15,
        adamw_ops_per_chunk=0, sm3_ops_per_chunk=0, sm3_ops_per_shape=0,
        bf16_values_ops_per_chunk=0,
        reselection_unit="matrix",
        # one tensor at a time; the bytes per entry are taken as the compact steps' (the code
        # they describe is gone, so they could not be measured)
        optimizer_unit="matrix", adamw_step_transient=16, sm3_step_transient=32),
    "compact": SpielLayout(
        "compact", index=4, age=2,          # int32 indices; the one int16 age (SFT-AG and SFT-MA)
        adamw=4 + 4,                        # exp_avg, exp_avg_sq fp32 (the age is ``age``)
        sm3=0,
        plan_sddmm=0, plan_dense=0, plan_row=0,  # no per-entry plan at rest: indices stay sorted
        # int32 candidates, grad_sum, grad_sq_sum; with one micro-batch a step (the model's
        # setup; sft.SftSelector's micro_batches_per_step) each candidate's gradient is folded
        # into them as it is made (with several, 4 bytes more through the backward)
        candidate=4 + 4 + 4,
        candidate_plan=0, candidate_plan_dense=0,
        pick_fp32_copy=False, pick_abs_fp32=False,  # one dense dW of one layer at a time
        # Counted on the library (tests/analysis/test_cost_model_kernels.py holds them), bf16,
        # dense path. Forward: W's entries gathered, added to the fp32 values and rounded back
        # in one kernel (``torch.add`` with an ``out`` of W's dtype), W patched and restored;
        # backward: the same 4 for the input gradient, the gather from dW and the gradient's
        # cast to fp32 (6 and 8 while the add was cast up, add, cast back). The optimizers run
        # over all SFT layers in chunks of at most STEP_CHUNK_ENTRIES entries: SftAdamW a fixed 26 kernels a chunk (27 with weight
        # decay), SftSM3 4 (5) plus 20 per matrix shape in the chunk (its row and column
        # maxima); bf16 deltas 5 more (gradients and values cast to fp32 at once, copied back).
        forward_ops=4, backward_ops=6, adamw_ops_per_layer=0, sm3_ops_per_layer=0,
        adamw_ops_per_chunk=26, sm3_ops_per_chunk=4, sm3_ops_per_shape=20,
        bf16_values_ops_per_chunk=5,
        reselection_unit="shape",
        # Measured exactly on CPU (finetune.profiling.allocations; tests/analysis/
        # test_cost_model_moments.py): SftAdamW's fp32 ages, bias corrections, update and
        # denominator peak at 16 bytes per entry of a chunk; SftSM3, per matrix shape in a
        # chunk, holds int64 rows and columns and repeat_interleave's int64 matrix numbers
        # with its own int64 index (32 bytes an entry of that shape's matrices), beside the
        # fp32 nu of the shapes before it (analysis.cost_model.memory).
        optimizer_unit="chunk", adamw_step_transient=16, sm3_step_transient=32,
        # The layer's input is rebuilt in the backward from what its producers saved (RMSNorm's
        # fp32 input and 1/rms, SwiGLU's SiLU(gate) and up), once per block input.
        rebuilds_inputs=True),
}
# The paper's implementation (AlanAnsell/peft, its Appendix B): the delta gradient gathered
# from a dense dW beside a W + Delta copy, no kernel plan, the age kept in the optimizer state.
LAYOUTS["paper"] = replace(LAYOUTS["plans"], name="paper", age=0, plan_dense=0, plan_sddmm=0,
                           plan_row=0, candidate_plan=0, candidate_plan_dense=0, in_place_delta=False)
DEFAULT_LAYOUT = "compact"
# sft.optim.STEP_CHUNK_ENTRIES: the optimizers' multi-tensor steps run over chunks of at most
# this many entries (tests/analysis/test_cost_model_kernels.py keeps the two equal).
STEP_CHUNK_ENTRIES = 2**24


def layout(name: "str | SpielLayout") -> SpielLayout:
    """A layout by name (``LAYOUTS``), or one given as is (a variant made with ``replace``)."""
    if isinstance(name, SpielLayout):
        return name
    if name not in LAYOUTS:
        raise ValueError(f"unknown SpIEL layout {name!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[name]
