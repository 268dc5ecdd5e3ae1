"""Time per training step from FLOP and byte counts, as a ratio to the frozen floor.

    step time = matmul FLOPs / F  +  elementwise bytes / B  +  dropout draws x t_rng

with F, B, t_rng a device's constants (``DEVICES``). Ratios to the floor need only their
proportions, which is why the model predicts ratios; the seconds it prints are orientation.

Matmul FLOPs (T tokens, s the sequence, N the block linears' weights, V h the LM head):
- forward 2 T (N + V h), attention 2 T s q L (QK^T and PV over the causal half);
- backward, input gradients: the same again, attention twice (flash's backward);
- weight gradients only of what is tuned: LoRA 4 T n (A and B), and its forward and
  input-gradient matmuls 2 T n each (n = r sum(d_in + d_out)); SpIEL's delta gradient, an SDDMM
  over the k tuned entries, or a dense dW = dY^T X (2 T N) gathered at them (``delta_grad``);
  SFT-AG's estimation adds, gamma of every S steps, the K = k candidates' SDDMM and, once per S
  steps, one dense dW to pick them;
- activation checkpointing recomputes the blocks' forward once.
Elementwise bytes: every tensor the forward produces is written and read once there, and its
gradient written and read in the backward: 6 x the bytes produced (a block's, the loss head's).
SpIEL adds W + Delta per matrix per forward and backward (a copy of W: 2 c bytes per weight; a
4-bit W is dequantized anyway) and its optimizer's passes over the k values; LoRA adds its
casts, dropout and adds per matrix, and one random draw per dropped element.
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis.cost_model.methods import Method, Setup, floor_of
from analysis.cost_model.shapes import ModelShape


@dataclass(frozen=True)
class Device:
    """``flops``: sustained matmul FLOP/s; ``bandwidth``: elementwise bytes/s; ``rng_s``:
    seconds per dropout draw beyond its bytes; ``delta_grad``: "sddmm" (priced by the CPU
    cost model of sft.kernels, ``sddmm_transpose`` and ``sddmm_dot`` multiply-adds per token)
    or "dense" (dW gathered)."""

    name: str
    flops: float
    bandwidth: float
    rng_s: float
    delta_grad: str
    sddmm_transpose: float = 0.0
    sddmm_dot: float = 0.0


DEVICES = {
    # A100 (the paper's GPU): 312 TFLOP/s bf16 and 2.0 TB/s peak; 60% and 80% of them are the
    # usual sustained rates of large GEMMs and of elementwise kernels. Dropout's Philox draws are
    # fused into its kernel (no cost beyond bytes). The paper's delta gradient gathered from the
    # dense dW (its Appendix B); ours times both paths per shape and keeps the faster, so
    # "dense" is its upper bound.
    "a100": Device("a100", 0.6 * 312e12, 0.8 * 2.0e12, 0.0, "dense"),
    # This 2-core machine, fp32, 2 threads, from measurements other than the Table 3 rows the
    # model is validated on: ../shared/PERF-NOTES.md (X W^T for a 1536 x 576 W over 2048 tokens
    # in 30 ms: 121 GFLOP/s; cloning that W and scattering a delta into it in 0.2 ms: 35 GB/s),
    # docs/benchmarks.md's bench.breakdown profile (aten::bernoulli_ 1040 ms for LoRA's
    # 153 M dropout draws per step: 6.8 ns each) and sft.kernels' SDDMM cost model at 2 threads
    # (its transposes run on one thread: 37 GEMM multiply-adds per feature per thread; 2.45).
    "cpu": Device("cpu", 121e9, 35e9, 6.8e-9, "sddmm", sddmm_transpose=74.0, sddmm_dot=2.45),
}


@dataclass(frozen=True)
class StepCost:
    matmul_flops: float
    elementwise_bytes: float
    dropout_draws: float
    seconds: float


def _block_produced_bytes(shape: ModelShape, setup: Setup) -> float:
    """Bytes one block's forward writes per token: two RMSNorms (fp32 cast, square, scale,
    cast back, weight: 12h + 2ch), the projections' outputs, RoPE on q and k (4 ops), the
    attention output, SiLU and the gate product, two residual adds."""
    c, h, f = setup.compute_bytes, shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    norms = 2 * (12 * h + 2 * c * h)
    projections = c * (q + 2 * kv + h + 2 * f + h)
    return norms + projections + 4 * c * (q + kv) + c * q + 2 * c * f + 2 * c * h


def step_cost(shape: ModelShape, method: Method, setup: Setup, device: Device) -> StepCost:
    T, L, c = setup.tokens, shape.layers, setup.compute_bytes
    N = shape.block_linear_params
    q = shape.heads * shape.head_dim
    ckpt = setup.activation_checkpointing
    fwd = 2 * T * (N + shape.vocab * shape.hidden)
    attention = 2 * T * setup.seq_len * q * L
    flops = 2 * fwd + 3 * attention + (2 * T * N + attention if ckpt else 0)
    block_bytes = _block_produced_bytes(shape, setup) * T * L
    head_bytes = (c + 8) * shape.vocab * T
    ewise = 6 * (block_bytes + head_bytes) + (2 * block_bytes if ckpt else 0)
    draws = 0.0
    passes = 3 if ckpt else 2  # forwards (with recomputation) + the backward
    if method.quantized:  # bitsandbytes dequantizes every W for each use: read 4 bits, write c
        ewise += passes * N * (0.52 + c)
    if method.family == "lora":
        n = shape.lora_params(method.rank)
        flops += 6 * T * n + (2 * T * n if ckpt else 0)
        d_in = L * sum(i for _, i, _ in shape.block_linears())
        d_out = L * sum(o for _, _, o in shape.block_linears())
        casts = (4 + c) * 2 if c != 4 else 0  # x -> fp32 adapter dtype, autocast back to bf16
        mask = (1 if setup.device == "cuda" else 4) if method.lora_dropout else 0
        per_token = d_in * (casts + 4 + mask) + d_out * 3 * c + c * method.rank * 7 * L
        ewise += 6 * T * per_token
        draws = T * d_in if method.lora_dropout else 0.0
        ewise += 40 * n  # AdamW: read and write two moments, the parameter and its gradient
    elif method.family == "sft":
        k_all = shape.lora_params(method.rank)
        period = method.reselection_steps
        if device.delta_grad == "sddmm":
            madds = L * sum(device.sddmm_transpose * (i + o) + device.sddmm_dot * k
                            for _, i, o, k in shape.active_per_matrix(method.rank))
            flops += 2 * T * madds
            if method.selection == "ag":  # candidates share the transposes: only their dots
                flops += method.accumulation_steps / period * 2 * T * device.sddmm_dot * k_all
        else:
            flops += 2 * T * N
        if method.selection == "ag":
            flops += 2 * T * N / period  # the dense dW that picks the candidates
        if not method.quantized:
            ewise += passes * 2 * c * N  # W + Delta: a copy of W per forward and backward
        ewise += passes * 24 * k_all  # gather W at the k entries, add, write back
        ewise += (60 if method.selection == "ag" else 100) * k_all  # SftAdamW / SftSM3 passes
    seconds = flops / device.flops + ewise / device.bandwidth + draws * device.rng_s
    return StepCost(flops, ewise, draws, seconds)


def time_vs_floor(shape: ModelShape, method: Method, setup: Setup, device: Device) -> float:
    """The method's step over its floor's (4-bit floor for 4-bit methods), same setup."""
    floor = floor_of(method)
    return step_cost(shape, method, setup, device).seconds / step_cost(shape, floor, setup, device).seconds
