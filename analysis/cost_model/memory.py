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
- SpIEL's linear (sft.layer._SparseDeltaLinear) saves its input: the qkv input (h), the gate/up
  input (h), the down input (f); o_proj's input is the attention output, already saved;
- peft LoRA casts x to the fp32 adapter dtype, drops out (CUDA's fused dropout keeps a 1-byte
  mask, CPU's keeps the fp32 noise), and lora_A keeps its input (c, autocast's bf16 copy) and
  lora_B lora_A's output (r x c);
- qLoRA's ``prepare_model_for_kbit_training`` casts embeddings, norms and LM head to fp32, so
  the residual stream and every projection's output (bitsandbytes casts back to the input's
  dtype) are fp32: the MLP's saved tensors are 4 bytes wide;
- the loss: ``logits.float()`` then cross-entropy keeps the fp32 log-softmax (4V per token);
  the first backward op holds its gradient in and out besides (8V more).

The peak is the larger of two moments: the start of the backward (every saved activation, the
loss's gradients, under checkpointing one block recomputed) and the optimizer step (every
gradient, the optimizer's temporaries, no activations). Gradients are set to None after each
step, so they do not coexist with the next step's activations.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from analysis.cost_model.methods import Method, Setup
from analysis.cost_model.shapes import ModelShape

GIB = 2**30
# bitsandbytes NF4 with double quantization: 4 bits per weight, one 8-bit absmax per block of
# 64 weights, one fp32 absmax per 256 of those blocks (the code tables are a few hundred bytes).
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# SpIEL, per tuned entry (sft.layer.SftLinear): int32 indices (every matrix < 2^31 entries) and
# int32 grown_at; the delta-gradient plan (sft.kernels.make_plan, SDDMM path): the CSR mask's
# int64 columns and fp32 values, and once a reselection has unsorted the indices an int64
# permutation back to the caller's order.
SFT_INDEX_BYTES, SFT_GROWN_AT_BYTES, SFT_PLAN_BYTES = 4, 4, 8 + 4 + 8
# SFT-AG's estimation phase per candidate (sft.estimation.CandidateEstimator, K = k): int32
# candidates, fp32 step gradient, sum and sum of squares, and their sorted SDDMM mask (8 + 4).
AG_CANDIDATE_BYTES = 4 + 4 + 4 + 4 + 8 + 4
# sft.optim: SftAdamW keeps exp_avg, exp_avg_sq (fp32) and an int32 age per value; SftSM3 one
# fp32 accumulator per row and per column, plus an fp32 momentum buffer when momentum > 0.
SFT_ADAMW_BYTES = 4 + 4 + 4
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
    backward_start: float
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


def block_activation_bytes(shape: ModelShape, method: Method, setup: Setup) -> float:
    """Bytes one block saves for the backward, per token (module docstring for the facts):
    floor 2(4h + 4) + c(q + 2kv + q) + 4a + 3f s, plus SpIEL s(2h + f), or LoRA per matrix
    d_in (mask + c) + r c; s is the stream's width."""
    c, s = setup.compute_bytes, _stream_bytes(method, setup)
    h, f = shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    floor = 2 * (4 * h + 4) + c * (2 * q + 2 * kv) + 4 * shape.heads + 3 * f * s
    if method.family == "sft":
        return floor + s * (2 * h + f)
    if method.family == "lora":
        mask = 0 if method.lora_dropout == 0 else (1 if setup.device == "cuda" else 4)
        return floor + sum(d_in * (mask + c) + method.rank * c for _, d_in, _ in shape.block_linears())
    return floor


def activation_bytes(shape: ModelShape, method: Method, setup: Setup) -> tuple[float, float]:
    """(saved at the start of the backward, one block recomputed during it). Without
    checkpointing every block's ``block_activation_bytes``; with it only each block's input
    (s h) and one block at a time recomputed. Plus the final norm (4h + 4) and the fp32
    log-softmax (4V)."""
    per_block = block_activation_bytes(shape, method, setup)
    head = 4 * shape.hidden + 4 + 4 * shape.vocab
    if setup.activation_checkpointing:
        kept = shape.layers * _stream_bytes(method, setup) * shape.hidden
        return setup.tokens * (kept + head), setup.tokens * per_block
    return setup.tokens * (shape.layers * per_block + head), 0.0


def spiel_bytes(shape: ModelShape, method: Method, setup: Setup,
                paper_code: bool = False) -> tuple[float, float, float]:
    """(state, estimation, dense transient) of SpIEL. State: per tuned entry indices, grown_at
    and the kernel plan, plus the plan's int64 row pointers (d_out + 1 per matrix). SFT-AG's
    estimation phase (inside every S-step window, so inside the measured steps): the
    candidate statistics of K = k candidates per matrix, and on its first step the dense dW of
    one matrix at a time (dW in c, its fp32 copy unless c is fp32, and |dW| in fp32) from which
    the top-K candidates are taken.

    ``paper_code``: the paper's implementation (AlanAnsell/peft, Appendix B) gathered the
    delta gradient from the dense dW, so it keeps no kernel plan and no candidate plan, and
    kept each value's age in the optimizer state rather than a grown_at buffer."""
    if method.family != "sft":
        return 0.0, 0.0, 0.0
    active = shape.active_per_matrix(method.rank)
    if paper_code:
        per_entry, rows, candidate = SFT_INDEX_BYTES, 0, AG_CANDIDATE_BYTES - 12
    else:
        per_entry, rows, candidate = SFT_INDEX_BYTES + SFT_GROWN_AT_BYTES + SFT_PLAN_BYTES, 8, AG_CANDIDATE_BYTES
    state = shape.layers * sum(k * per_entry + rows * (d_out + 1) for _, _, d_out, k in active)
    if method.selection != "ag":
        return state, 0.0, 0.0
    estimation = shape.layers * sum(k * candidate + rows * (d_out + 1) for _, _, d_out, k in active)
    largest = max(d_in * d_out for _, d_in, d_out, _ in active)
    c = setup.compute_bytes
    return state, estimation, largest * (c + (4 if c != 4 else 0) + 4)


def trainable_bytes(shape: ModelShape, method: Method, setup: Setup) -> tuple[float, float, float, float]:
    """(parameters, gradients, optimizer state, optimizer-step temporaries).

    LoRA: r(d_in + d_out) per matrix, fp32 (peft's autocast_adapter_dtype, also under qLoRA);
    torch AdamW's two fp32 moments; on CUDA its foreach implementation holds about one more
    parameter-sized fp32 list while it computes the update. SpIEL: k values per matrix, fp32
    (bf16 under 4 bits, as the paper); SftAdamW 12 bytes per value; SftSM3 4(d_out + d_in)
    per matrix (+ 4 per value with momentum); its per-tensor temporaries are small."""
    n = shape.lora_params(method.rank) if method.family != "frozen" else 0
    if method.family == "lora":
        foreach = 4 * n if setup.device == "cuda" else 0
        return 4 * n, 4 * n, 8 * n, foreach
    if method.family == "sft":
        value = 2 if method.quantized else 4
        if method.selection == "ag":
            opt = SFT_ADAMW_BYTES * n
        else:
            opt = shape.layers * sum(4 * (d_in + d_out) for _, d_in, d_out in shape.block_linears())
            opt += 4 * n if method.sm3_momentum > 0 else 0
        return value * n, value * n, opt, 0.0
    return 0.0, 0.0, 0.0, 0.0


def matrix_transient(shape: ModelShape, method: Method, setup: Setup,
                     paper_code: bool = False) -> float:
    """One matrix materialised at a time: SpIEL's W + Delta (a copy in c; under 4 bits the
    dequantized W itself), bitsandbytes' dequantized W in the 4-bit floor's and qLoRA's
    backward, and qLoRA's fp32 LM head cast to bf16 for each use under autocast. The paper's
    SpIEL gathered its delta gradient from a dense dW (c) beside W + Delta."""
    largest = max(d_in * d_out for _, d_in, d_out in shape.block_linears())
    if method.family == "sft" or method.quantized:
        out = largest * setup.compute_bytes * (2 if paper_code and method.family == "sft" else 1)
        if method.quantized and method.family == "lora" and setup.device == "cuda":
            out = max(out, shape.vocab * shape.hidden * setup.compute_bytes)
        return out
    return 0.0


def peak_memory(shape: ModelShape, method: Method, setup: Setup, paper_code: bool = False,
           paged_optimizer: bool = False) -> MemoryBreakdown:
    """The breakdown and its peak (allocated bytes, before the allocator's own overhead).

    ``paper_code``: SpIEL as the paper's implementation kept it (``spiel_bytes``).
    ``paged_optimizer``: the optimizer state lives in paged (unified) memory that is evicted to
    the host under pressure, as the paper's qLoRA (its footnote 10): it does not count."""
    weights = weight_bytes(shape, method, setup)
    params, grads, opt, opt_tmp = trainable_bytes(shape, method, setup)
    if paged_optimizer:
        opt = opt_tmp = 0.0
    state, estimation, dense_tmp = spiel_bytes(shape, method, setup, paper_code)
    saved, recompute = activation_bytes(shape, method, setup)
    loss_tmp = 8 * shape.vocab * setup.tokens
    matrix_tmp = max(matrix_transient(shape, method, setup, paper_code), dense_tmp)
    persistent = weights + params + opt + state + estimation
    backward_start = persistent + saved + loss_tmp + recompute + matrix_tmp
    optimizer_step = persistent + grads + opt_tmp
    return MemoryBreakdown(weights, params, grads, opt, state, estimation, saved, loss_tmp,
                           recompute, matrix_tmp, opt_tmp, backward_start, optimizer_step,
                           max(backward_start, optimizer_step))


def cuda_cap_gib(breakdown: MemoryBreakdown) -> float:
    """The paper's measure: the smallest whole GiB under set_per_process_memory_fraction that
    fits the peak plus the allocator's overhead (the CUDA context is outside the cap)."""
    return float(math.ceil(breakdown.peak * (1 + ALLOCATOR_OVERHEAD) / GIB))


def gpu_total_gib(breakdown: MemoryBreakdown) -> float:
    """What the GPU must hold: the peak, the allocator's overhead and the CUDA context."""
    return breakdown.peak * (1 + ALLOCATOR_OVERHEAD) / GIB + CUDA_CONTEXT_GIB
