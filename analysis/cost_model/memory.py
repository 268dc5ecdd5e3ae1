"""Peak training memory of one method, term by term, from shapes and dtypes alone.

Notation: T tokens per step (batch x sequence), h hidden, f intermediate, L blocks, V vocabulary,
a heads, kv the key/value width (kv heads x head dim), r the rank, k the tuned entries of a
matrix (SpIEL's LoRA-equivalent budget spread at one density), c the activation dtype's bytes
(2: bf16 autocast on CUDA; 4: fp32 on CPU). Every term is in bytes.

What autograd keeps was read from the code and checked with ``saved_tensors_hooks`` on a tiny
Llama (fp32, CPU): per token and block the frozen floor saves 6h + 3f + a floats, SpIEL
2h + f more, LoRA (CPU dropout) 8 bytes per input feature of each of the seven matrices plus
4r; the prediction matched to the float. The facts behind it:

- autograd saves a matmul's input only when the weight needs a gradient (frozen linears and
  bitsandbytes' 4-bit matmul keep nothing of their input);
- RMSNorm saves its fp32 input (4h) and 1/rms (4 bytes); SDPA's flash kernels save q, k, v,
  the output (c each) and a log-sum-exp per head (4a); the SwiGLU MLP saves gate, SiLU(gate)
  and up (3f, at the stream's width);
- SpIEL's linear (sft.layer._SparseDeltaLinear) saved its input before ``sft.rebuild``: the qkv
  input (h), the gate/up input (h), the down input (f); o_proj's input is the attention
  output, already saved. Since (layout ``rebuilds_inputs``) it rebuilds them in the backward
  from RMSNorm's and SwiGLU's saved tensors and saves nothing beyond the floor (the first
  block's qkv input, made from frozen embeddings, is still saved: h values per token once
  per model, left out), except under non-reentrant checkpointing, whose hooks own what is
  saved;
- peft LoRA casts x to the fp32 adapter dtype, drops out (CUDA's fused dropout keeps a 1-byte
  mask, CPU's keeps the fp32 noise), and lora_A keeps its input (c, autocast's bf16 copy) and
  lora_B lora_A's output (r x c);
- qLoRA's ``prepare_model_for_kbit_training`` casts embeddings, norms and LM head to fp32, so
  the residual stream and every projection's output (bitsandbytes casts back to the input's
  dtype) are fp32: the MLP's saved tensors are 4 bytes wide;
- the loss: ``logits.float()`` then cross-entropy keeps the fp32 log-softmax (4V per token);
  the first backward op holds its gradient in and out besides (8V more).

The peak is the largest of four moments, each made of what is live then (gradients are set to
None after each step, so they never coexist with the next step's activations):

- the loss's backward, where the backward starts: every saved activation and the loss's
  gradients;
- the last block's backward (the first one the backward reaches), the loss's tensors freed:
  every block's saved activations, under checkpointing that block recomputed, one matrix's
  transient (SpIEL's dense dW, a dequantized W) and that block's gradients;
- the first block's backward (the last one): the same transients, one block's activations,
  and by then nearly every gradient: the worst moment when the tuned state outweighs the
  activations (short sequences, checkpointing);
- the optimizer step: every gradient and the optimizer's temporaries, no activations.

Earlier versions summed the recomputed block and the matrix transient into the first moment;
they never coexist with the loss's gradients. ``finetune.profiling.allocations`` measures the
moments exactly on CPU (bf16, the dense path as on a GPU), and
tests/analysis/test_cost_model_moments.py holds the model to them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from analysis.cost_model.layout import (DEFAULT_LAYOUT, STEP_CHUNK_ENTRIES, SpielLayout,
                                         layout as get_layout)
from analysis.cost_model.methods import Method, Setup
from analysis.cost_model.shapes import ModelShape

GIB = 2**30
# bitsandbytes NF4 with double quantization: 4 bits per weight, one 8-bit absmax per block of
# 64 weights, one fp32 absmax per 256 of those blocks (the code tables are a few hundred bytes).
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# Empirical: the CUDA context (driver, kernels, cuBLAS handles) lives outside PyTorch's
# allocator, so set_per_process_memory_fraction (the paper's cap) does not count it, but a job's
# GPU does. 0.5 GiB is the usual size on A100/H100 with torch 2.x's lazy module loading; not
# fitted to any number this model is validated on.
CUDA_CONTEXT_GIB = 0.5
# A design assumption, not a fit: PyTorch's caching allocator rounds blocks up (to 512 B, and
# 2 MiB / 20 MiB segments for large ones) and fragments within its segments; under a cap it
# frees its cache and retries before it fails, so what a cap must leave above the peak of
# allocated bytes is this rounding and fragmentation, taken as 5%.
ALLOCATOR_OVERHEAD = 0.05


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per term; ``peak`` is what the allocator holds at the worst moment."""

    weights: float
    trainable: float
    gradients: float
    optimizer: float
    spiel_state: float
    spiel_estimation: float
    activations: float
    loss_transient: float
    recompute: float
    matrix_transient: float
    optimizer_transient: float
    loss_backward: float
    block_backward: float
    backward_end: float
    optimizer_step: float
    peak: float

    def gib(self) -> dict[str, float]:
        return {k: v / GIB for k, v in asdict(self).items()}


def weight_bytes(shape: ModelShape, method: Method, setup: Setup) -> float:
    """Frozen weights: every parameter at the compute dtype; with 4 bits the block linears at
    ``NF4_BYTES`` and the rest (embeddings, norms, LM head) as is, except that qLoRA's
    ``prepare_model_for_kbit_training`` casts them to fp32."""
    if not method.quantized:
        return shape.total_params * setup.compute_bytes
    other = 4 if method.family == "lora" else setup.compute_bytes
    return shape.block_linear_params * NF4_BYTES + shape.other_params * other


def _stream_bytes(method: Method, setup: Setup) -> int:
    """Width of the residual stream and the projections' outputs (fp32 under qLoRA)."""
    return 4 if method.quantized and method.family == "lora" else setup.compute_bytes


def block_activation_bytes(shape: ModelShape, method: Method, setup: Setup,
                           spiel: SpielLayout | None = None) -> float:
    """Bytes one block saves for the backward, per token (module docstring for the facts):
    floor 2(4h + 4) + c(q + 2kv + q) + 4a + 3f s, plus SpIEL s(2h + f) unless its layout
    rebuilds the inputs, or LoRA per matrix d_in (mask + c) + r c; s is the stream's width."""
    c, s = setup.compute_bytes, _stream_bytes(method, setup)
    h, f = shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    floor = 2 * (4 * h + 4) + c * (2 * q + 2 * kv) + 4 * shape.heads + 3 * f * s
    if method.family == "sft":
        # Non-reentrant checkpointing (finetune's, measure's) owns what is saved through its
        # hooks, and sft.rebuild stands down under them: the recomputed block saves the inputs.
        rebuilt = (spiel or get_layout(DEFAULT_LAYOUT)).rebuilds_inputs and not setup.activation_checkpointing
        return floor + (0 if rebuilt else s * (2 * h + f))
    if method.family == "lora":
        mask = 0 if method.lora_dropout == 0 else (1 if setup.device == "cuda" else 4)
        return floor + sum(d_in * (mask + c) + method.rank * c for _, d_in, _ in shape.block_linears())
    return floor


def activation_bytes(shape: ModelShape, method: Method, setup: Setup,
                     spiel: SpielLayout | None = None) -> tuple[float, float]:
    """(saved at the start of the backward, one block recomputed during it). Without
    checkpointing every block's ``block_activation_bytes``; with it only each block's input
    (s h) and one block at a time recomputed. Plus the final norm (4h + 4) and the fp32
    log-softmax (4V)."""
    per_block = block_activation_bytes(shape, method, setup, spiel)
    head = 4 * shape.hidden + 4 + 4 * shape.vocab
    if setup.activation_checkpointing:
        kept = shape.layers * _stream_bytes(method, setup) * shape.hidden
        return setup.tokens * (kept + head), setup.tokens * per_block
    return setup.tokens * (shape.layers * per_block + head), 0.0


# One delta-gradient path for every matrix, or one per matrix shape (d_out, d_in).
DeltaGradPaths = str | Mapping[tuple[int, int], str]


def path_of(delta_grad: DeltaGradPaths, d_in: int, d_out: int) -> str:
    """The delta-gradient path of a (d_out, d_in) matrix: one path for every matrix, or one per
    matrix shape ``{(d_out, d_in): path}`` (a dispatcher that decided per shape, as sft.kernels'
    CUDA calibration did before issue 21; shapes not named are dense)."""
    return delta_grad if isinstance(delta_grad, str) else delta_grad.get((d_out, d_in), "dense")


def spiel_bytes(shape: ModelShape, method: Method, setup: Setup, spiel: SpielLayout,
                delta_grad: DeltaGradPaths = "dense") -> tuple[float, float, float]:
    """(state, estimation, dense transient) of SpIEL in layout ``spiel`` (analysis.cost_model.
    layout), with the delta gradient on path ``delta_grad`` ("dense" or "sddmm", or one per
    matrix shape: ``path_of``). State: per tuned entry the index, the age and the kernel plan
    (per entry and, SDDMM path, per row). SFT-AG's estimation phase (inside every S-step
    window, so inside the measured steps): the candidate statistics and plan of K = k
    candidates per matrix, and on its first step the dense dW of one matrix at a time (in c,
    an fp32 copy and |dW| as the layout keeps them) from which the top-K candidates are taken."""
    if method.family != "sft":
        return 0.0, 0.0, 0.0
    active = shape.active_per_matrix(method.rank)
    state = estimation = 0.0
    for _, d_in, d_out, k in active:
        sddmm = path_of(delta_grad, d_in, d_out) == "sddmm"
        rows = spiel.plan_row * (d_out + 1) if sddmm else 0
        state += k * (spiel.index + spiel.age + (spiel.plan_sddmm if sddmm else spiel.plan_dense)) + rows
        candidate = spiel.candidate + (spiel.candidate_plan if sddmm else spiel.candidate_plan_dense)
        estimation += k * candidate + rows
    state *= shape.layers
    if method.selection != "ag":
        return state, 0.0, 0.0
    estimation *= shape.layers
    largest = max(d_in * d_out for _, d_in, d_out, _ in active)
    c = setup.compute_bytes
    pick = c + (4 if spiel.pick_fp32_copy and c != 4 else 0) + (4 if spiel.pick_abs_fp32 else c)
    return state, estimation, largest * pick


def trainable_bytes(shape: ModelShape, method: Method, setup: Setup,
                    spiel: SpielLayout | None = None) -> tuple[float, float, float, float]:
    """(parameters, gradients, optimizer state, optimizer-step temporaries).

    LoRA: r(d_in + d_out) per matrix, fp32 (peft's autocast_adapter_dtype, also under qLoRA);
    torch AdamW's two fp32 moments; on CUDA its foreach implementation holds about one more
    parameter-sized fp32 list while it computes the update. SpIEL: k values per matrix, fp32
    (bf16 under 4 bits, as the paper); SftAdamW the layout's bytes per value; SftSM3 4(d_out +
    d_in) per matrix (+ 4 per value with momentum); their step's temporaries
    (``optimizer_step_transient``)."""
    n = shape.lora_params(method.rank) if method.family != "frozen" else 0
    if method.family == "lora":
        foreach = 4 * n if setup.device == "cuda" else 0
        return 4 * n, 4 * n, 8 * n, foreach
    if method.family == "sft":
        spiel = spiel or get_layout(DEFAULT_LAYOUT)
        value = 2 if method.quantized else 4
        if method.selection == "ag":
            opt = spiel.adamw * n
        else:
            opt = shape.layers * sum(4 * (d_in + d_out) for _, d_in, d_out in shape.block_linears())
            opt += (spiel.sm3 + (4 if method.sm3_momentum > 0 else 0)) * n
        return value * n, value * n, opt, optimizer_step_transient(shape, method, spiel)
    return 0.0, 0.0, 0.0, 0.0


def _step_units(shape: ModelShape, rank: int, spiel: SpielLayout) -> list[list[tuple[tuple[int, int], int]]]:
    """The (matrix shape, tuned entries) an optimizer step works on at once, in the model's
    parameter order: runs of whole matrices of at most ``STEP_CHUNK_ENTRIES`` entries
    (sft.optim's chunks), or one matrix at a time."""
    matrices = [((d_out, d_in), k) for _ in range(shape.layers)
                for _, d_in, d_out, k in shape.active_per_matrix(rank)]
    if spiel.optimizer_unit != "chunk":
        return [[m] for m in matrices]
    units, current, size = [], [], 0
    for m in matrices:
        if current and size + m[1] > STEP_CHUNK_ENTRIES:
            units.append(current)
            current, size = [], 0
        current.append(m)
        size += m[1]
    return units + [current] if current else units


def optimizer_step_transient(shape: ModelShape, method: Method, spiel: SpielLayout) -> float:
    """The most bytes SpIEL's optimizer step holds beyond its state, gradients and values, at
    its worst unit (``_step_units``). SftAdamW: ``adamw_step_transient`` per entry of the
    unit. SftSM3 works through a unit's matrices shape by shape, in order of appearance,
    keeping each shape's fp32 nu (4 bytes an entry) for the update while the next shape holds
    ``sm3_step_transient`` per entry; bf16 deltas add its fp32 copy of the gradients (4)."""
    worst = 0.0
    for unit in _step_units(shape, method.rank, spiel):
        entries = sum(k for _, k in unit)
        if method.selection == "ag":
            worst = max(worst, spiel.adamw_step_transient * entries)
            continue
        by_shape: dict[tuple[int, int], int] = {}
        for matrix_shape, k in unit:
            by_shape[matrix_shape] = by_shape.get(matrix_shape, 0) + k
        done = 0
        copy = 4 * entries if method.quantized else 0
        for k in by_shape.values():
            worst = max(worst, copy + 4 * done + spiel.sm3_step_transient * k)
            done += k
    return worst


def matrix_transient(shape: ModelShape, method: Method, setup: Setup,
                     spiel: SpielLayout | None = None, delta_grad: DeltaGradPaths = "dense") -> float:
    """What one matrix at a time materialises: bitsandbytes' dequantized W (the 4-bit floor's
    and qLoRA's backward; under 4 bits SpIEL's W + Delta is built on it), SpIEL's W + Delta copy
    when it cannot patch W in place (4 bits, the paper's code), the dense path's dW beside it,
    and qLoRA's fp32 LM head cast to bf16 for each use under autocast."""
    largest = max(d_in * d_out for _, d_in, d_out in shape.block_linears())
    c = setup.compute_bytes
    if method.family == "sft":
        spiel = spiel or get_layout(DEFAULT_LAYOUT)
        dense = any(path_of(delta_grad, d_in, d_out) == "dense" for _, d_in, d_out in shape.block_linears())
        copies = (1 if method.quantized or not spiel.in_place_delta else 0) + dense
        return largest * c * copies
    if method.quantized:
        out = largest * c
        if method.family == "lora" and setup.device == "cuda":
            out = max(out, shape.vocab * shape.hidden * c)
        return out
    return 0.0


def peak_memory(shape: ModelShape, method: Method, setup: Setup, spiel: "str | SpielLayout" = DEFAULT_LAYOUT,
                delta_grad: DeltaGradPaths = "dense", paged_optimizer: bool = False) -> MemoryBreakdown:
    """The breakdown and its peak (allocated bytes, before the allocator's own overhead).

    ``spiel``: SpIEL's layout (a name of analysis.cost_model.layout.LAYOUTS, or one); ``delta_grad``: the path
    its delta gradient takes ("dense" or "sddmm": timing.dispatcher_path; or one per matrix
    shape, ``path_of``).
    ``paged_optimizer``: the optimizer state lives in paged (unified) memory that is evicted to
    the host under pressure, as the paper's qLoRA (its footnote 10): it does not count."""
    spiel_layout = get_layout(spiel)
    weights = weight_bytes(shape, method, setup)
    params, grads, opt, opt_tmp = trainable_bytes(shape, method, setup, spiel_layout)
    if paged_optimizer:
        opt = opt_tmp = 0.0
    state, estimation, dense_tmp = spiel_bytes(shape, method, setup, spiel_layout, delta_grad)
    saved, recompute = activation_bytes(shape, method, setup, spiel_layout)
    loss_tmp = 8 * shape.vocab * setup.tokens
    log_softmax = 4 * shape.vocab * setup.tokens  # saved, freed by the loss's backward
    matrix_tmp = max(matrix_transient(shape, method, setup, spiel_layout, delta_grad), dense_tmp)
    persistent = weights + params + opt + state + estimation
    # what one block keeps until its own backward: its saved activations, or under
    # checkpointing its input and, once the backward reaches it, its recomputed activations
    if setup.activation_checkpointing:
        one_block = setup.tokens * _stream_bytes(method, setup) * shape.hidden + recompute
    else:
        one_block = setup.tokens * block_activation_bytes(shape, method, setup, spiel_layout)
    # a block's backward also holds gradients of its own activations: the MLP's backward keeps
    # three T x f at once (down_proj's input gradient, then the gradients of SiLU(gate) and up)
    block_tmp = max(matrix_tmp, 3 * setup.tokens * shape.intermediate * _stream_bytes(method, setup))
    loss_backward = persistent + saved + loss_tmp
    block_backward = (persistent + saved - log_softmax + recompute + block_tmp
                      + grads / shape.layers)
    backward_end = persistent + one_block + block_tmp + grads
    optimizer_step = persistent + grads + opt_tmp
    return MemoryBreakdown(weights, params, grads, opt, state, estimation, saved, loss_tmp,
                           recompute, matrix_tmp, opt_tmp, loss_backward, block_backward,
                           backward_end, optimizer_step,
                           max(loss_backward, block_backward, backward_end, optimizer_step))


def cuda_cap_gib(breakdown: MemoryBreakdown) -> float:
    """The paper's measure: the smallest whole GiB under set_per_process_memory_fraction that
    fits the peak plus the allocator's overhead (the CUDA context is outside the cap)."""
    return float(math.ceil(breakdown.peak * (1 + ALLOCATOR_OVERHEAD) / GIB))


def gpu_total_gib(breakdown: MemoryBreakdown) -> float:
    """What the GPU must hold: the peak, the allocator's overhead and the CUDA context."""
    return breakdown.peak * (1 + ALLOCATOR_OVERHEAD) / GIB + CUDA_CONTEXT_GIB
