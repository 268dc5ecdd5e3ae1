"""Time per training step from FLOP and byte counts, as a ratio to the frozen floor.

    step time = matmul FLOPs / F  +  elementwise bytes / B  +  dropout draws x t_rng
                +  adapter kernels x t_op  (+ SpIEL's periodic work / S: estimation, reselection)

with F, B, t_rng, t_op a device's constants (``DEVICES``). Ratios to the floor need only their
proportions, which is why the model predicts ratios; the seconds it prints are orientation.

Matmul FLOPs (T tokens, s the sequence, N the block linears' weights, V h the LM head):
- forward 2 T (N + V h), attention 2 T s q L (QK^T and PV over the causal half);
- backward, input gradients: the same again, attention twice (flash's backward);
- weight gradients only of what is tuned: LoRA 4 T n (A and B), and its forward and
  input-gradient matmuls 2 T n each (n = r sum(d_in + d_out)); SpIEL's delta gradient, an SDDMM
  over the k tuned entries, or a dense dW = dY^T X (2 T N) gathered at them (the path
  sft.kernels' dispatcher picks, ``dispatcher_path``); on the SDDMM path SFT-AG's estimation
  adds, gamma of every S steps, the K = k candidates' SDDMM and, once per S steps, one dense dW
  to pick them (on the dense path dW is there already: only its top-K pick);
- activation checkpointing recomputes the blocks' forward once.
Elementwise bytes: every tensor the forward produces is written and read once there, and its
gradient written and read in the backward: 6 x the bytes produced (a block's, the loss head's).
SpIEL patches its delta into W in place (the paper's code copied W: 2 c bytes per weight per
forward and backward; a 4-bit W is dequantized anyway) and adds its optimizer's passes over the
k values; LoRA adds its casts, dropout and adds per matrix, and one random draw per dropped
element.
Host: on a GPU the adapters' many small kernels leave it waiting for the host (Python, the
dispatcher, the launch): each adapted linear's kernels per forward and backward and the
optimizer's per tensor cost ``op_s`` each (LoRA: ``LORA_*_OPS``; SpIEL: its layout's counts).
Reselection: host-synced seconds per matrix or per group of same-shape matrices (as the layout
batches it), amortized over the S steps between reselections in the mean step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.cost_model.layout import DEFAULT_LAYOUT, STEP_CHUNK_ENTRIES, SpielLayout, layout as get_layout
from analysis.cost_model.methods import Method, Setup, floor_of
from analysis.cost_model.shapes import ModelShape


@dataclass(frozen=True)
class Device:
    """``flops``: sustained matmul FLOP/s; ``bandwidth``: elementwise bytes/s; ``rng_s``:
    seconds per dropout draw beyond its bytes; ``delta_grad``: the path SpIEL's dispatcher
    (sft.kernels) takes on this device: "sddmm" (priced by the CPU cost model of sft.kernels,
    ``sddmm_transpose`` and ``sddmm_dot`` multiply-adds per token, each matrix taking the
    cheaper of it and the dense GEMM) or "dense" (dW = dY^T X on tensor cores, gathered).
    ``op_s``: host seconds per kernel launch the GPU does not hide (Python, the dispatcher and
    the launch itself, for the adapters' small kernels); ``reselection_s``: host-synced seconds
    of one reselection per unit of work (a matrix, or a group of same-shape matrices), by
    growth criterion."""

    name: str
    flops: float
    bandwidth: float
    rng_s: float
    delta_grad: str
    sddmm_transpose: float = 0.0
    sddmm_dot: float = 0.0
    op_s: float = 0.0
    reselection_s: tuple[tuple[str, float], ...] = ()


DEVICES = {
    # A100 (the paper's GPU): 312 TFLOP/s bf16 and 2.0 TB/s peak; 60% and 80% of them are the
    # usual sustained rates of large GEMMs and of elementwise kernels. Dropout's Philox draws are
    # fused into its kernel (no cost beyond bytes). The paper's delta gradient gathered from the
    # dense dW (its Appendix B). No host term: no A100 host was measured.
    "a100": Device("a100", 0.6 * 312e12, 0.8 * 2.0e12, 0.0, "dense"),
    # H200 (docs/benchmarks.md, GPU section): 989 TFLOP/s dense bf16 and 4.8 TB/s peak at the
    # same sustained fractions as the A100 (not fitted). Two constants are fitted, each on
    # cells named here and validated on the others: ``op_s`` on LoRA's plain step without
    # checkpointing (0.296 s over the floor's 0.141 s, 224 adapted linears x 20 kernels;
    # validated on SFT-AG, SFT-MA, checkpointing and 4 bits), and ``reselection_s`` on the
    # reselection hooks of SFT-AG (0.35-0.51 s) and SFT-MA (2.0-3.0 s), 224 matrices each
    # (nothing left to validate them on but the 4-bit cells' hooks).
    "h200": Device("h200", 0.6 * 989e12, 0.8 * 4.8e12, 0.0, "dense", op_s=15.4e-6,
                   reselection_s=(("ag", 1.91e-3), ("ma", 11.2e-3))),
    # This 2-core machine, fp32, 2 threads, from measurements other than the Table 3 rows the
    # model is validated on: ../shared/PERF-NOTES.md (X W^T for a 1536 x 576 W over 2048 tokens
    # in 30 ms: 121 GFLOP/s; cloning that W and scattering a delta into it in 0.2 ms: 35 GB/s),
    # docs/benchmarks.md's bench.breakdown profile (aten::bernoulli_ 1040 ms for LoRA's
    # 153 M dropout draws per step: 6.8 ns each) and sft.kernels' SDDMM cost model at 2 threads
    # (its transposes run on one thread: 37 GEMM multiply-adds per feature per thread; 2.45).
    # The CPU runs its kernels itself, so their dispatch is inside these rates (no ``op_s``).
    "cpu": Device("cpu", 121e9, 35e9, 6.8e-9, "sddmm", sddmm_transpose=74.0, sddmm_dot=2.45),
}
# peft's LoRA linear, kernels beyond the frozen matmul, counted with a TorchDispatchMode (CPU
# autocast; CUDA fuses dropout's four kernels into one): forward casts x to the fp32 adapter,
# drops out, autocast casts x and both adapter weights to bf16, two matmuls, scales and adds;
# backward two matmuls per adapter, the casts back, the scale and the add of the input gradient.
LORA_FORWARD_OPS, LORA_BACKWARD_OPS = 9, 11
# torch.optim.AdamW (foreach on CUDA): a dozen multi-tensor kernels a step over all adapters.
ADAMW_FOREACH_OPS = 12
# One reselection streams the k values and the candidates' statistics about ten times
# (|values|, top-k, scores, the replaced indices, values and optimizer state): 4-byte passes.
RESELECTION_BYTES_PER_ENTRY = 40


@dataclass(frozen=True)
class StepCost:
    """``seconds``: a plain step (no estimation, no reselection); ``mean_seconds``: averaged
    over one reselection period (SFT-AG's gamma estimation steps and the reselection);
    ``host_seconds``: the launch-and-Python part of ``seconds``."""

    matmul_flops: float
    elementwise_bytes: float
    dropout_draws: float
    host_seconds: float
    seconds: float
    reselection_seconds: float
    mean_seconds: float


def _block_produced_bytes(shape: ModelShape, setup: Setup) -> float:
    """Bytes one block's forward writes per token: two RMSNorms (fp32 cast, square, scale,
    cast back, weight: 12h + 2ch), the projections' outputs, RoPE on q and k (4 ops), the
    attention output, SiLU and the gate product, two residual adds."""
    c, h, f = setup.compute_bytes, shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    norms = 2 * (12 * h + 2 * c * h)
    projections = c * (q + 2 * kv + h + 2 * f + h)
    return norms + projections + 4 * c * (q + kv) + c * q + 2 * c * f + 2 * c * h


def _sddmm_madds(device: Device, d_in: int, d_out: int, k: int) -> float:
    """sft.kernels' CPU cost model: multiply-adds per token of the SDDMM for one matrix."""
    return device.sddmm_transpose * (d_in + d_out) + device.sddmm_dot * k


def _rebuild_cost(shape: ModelShape, setup: Setup) -> tuple[float, int]:
    """(bytes per token, kernels) per block for rebuilding the SFT layers' inputs in the
    backward (sft.rebuild): twice RMSNorm's output, fp32 h x 1/rms (read 4h, write 4h), the
    cast to the compute dtype where it is not fp32 (read 4h, write c h) and x the norm's weight
    (read and write c h); once SiLU(gate) x up (read 2 c f, write c f)."""
    c, h, f = setup.compute_bytes, shape.hidden, shape.intermediate
    cast = c != 4
    norm = 8 * h + (4 + c) * h * cast + 2 * c * h
    return 2 * norm + 3 * c * f, 2 * (2 + cast) + 1


def dispatcher_path(shape: ModelShape, method: Method, device: Device) -> str:
    """The delta-gradient path sft.kernels' dispatcher picks, as one word for the memory terms:
    "dense" on a dense profile; on an SDDMM profile the path of the matrix with the most tuned
    entries (the CPU cost model's choice: the cheaper of the SDDMM and the dense GEMM)."""
    if device.delta_grad == "dense" or method.family != "sft":
        return "dense"
    _, d_in, d_out, k = max(shape.active_per_matrix(method.rank), key=lambda m: m[3])
    return "sddmm" if _sddmm_madds(device, d_in, d_out, k) < d_in * d_out else "dense"


def reselection_seconds(shape: ModelShape, method: Method, device: Device,
                        spiel: SpielLayout) -> float:
    """One reselection: the host-synced work per matrix (one by one) or per group of
    same-shape matrices (batched), plus its passes over the k entries."""
    if method.family != "sft":
        return 0.0
    per_unit = dict(device.reselection_s).get(method.selection, 0.0)
    linears = shape.block_linears()
    units = (shape.layers * len(linears) if spiel.reselection_unit == "matrix"
             else len({(d_in, d_out) for _, d_in, d_out in linears}))
    return units * per_unit + RESELECTION_BYTES_PER_ENTRY * shape.lora_params(method.rank) / device.bandwidth


def step_cost(shape: ModelShape, method: Method, setup: Setup, device: Device,
              spiel: SpielLayout | None = None, delta_grad: str | None = None) -> StepCost:
    """``spiel``: SpIEL's layout (default ``layout.DEFAULT_LAYOUT``); ``delta_grad``: force a
    path ("dense", "sddmm") instead of the dispatcher's."""
    spiel = spiel or get_layout(DEFAULT_LAYOUT)
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
    draws = ops = periodic = 0.0
    passes = 3 if ckpt else 2  # forwards (with recomputation) + the backward
    forwards = passes - 1
    matrices = L * len(shape.block_linears())
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
        ops = matrices * (forwards * LORA_FORWARD_OPS + LORA_BACKWARD_OPS) + ADAMW_FOREACH_OPS
    elif method.family == "sft":
        k_all = shape.lora_params(method.rank)
        period = method.reselection_steps
        sparse = (delta_grad or dispatcher_path(shape, method, device)) == "sddmm"
        if sparse and not device.sddmm_dot:
            raise ValueError(f"the {device.name!r} profile has no SDDMM cost (only the CPU's was "
                             "measured): its SpIEL time is priced on the dense path only")
        if sparse:  # each matrix on the cheaper of the SDDMM and the dense GEMM
            madds = L * sum(min(_sddmm_madds(device, i, o, k), i * o)
                            for _, i, o, k in shape.active_per_matrix(method.rank))
            flops += 2 * T * madds
            if method.selection == "ag":  # candidates share the transposes: only their dots
                periodic += method.accumulation_steps * 2 * T * device.sddmm_dot * k_all / device.flops
                periodic += 2 * T * N / device.flops  # the dense dW that picks the candidates
        else:
            flops += 2 * T * N
            if method.selection == "ag":  # the top-K pick reads dW and writes |dW| once a phase
                periodic += 2 * c * N / device.bandwidth
        if not method.quantized and not spiel.in_place_delta:
            ewise += passes * 2 * c * N  # W + Delta: a copy of W per forward and backward
        ewise += passes * 24 * k_all  # gather W at the k entries, add, write back
        ewise += (60 if method.selection == "ag" else 100) * k_all  # SftAdamW / SftSM3 passes
        ops = matrices * (forwards * spiel.forward_ops + spiel.backward_ops) + _optimizer_ops(
            shape, method, spiel, matrices, k_all)
        if spiel.rebuilds_inputs and not ckpt:  # it stands down under checkpointing's hooks
            rebuild_bytes, rebuild_ops = _rebuild_cost(shape, setup)
            ewise += T * L * rebuild_bytes
            ops += L * rebuild_ops
    host = ops * device.op_s
    seconds = flops / device.flops + ewise / device.bandwidth + draws * device.rng_s + host
    reselect = reselection_seconds(shape, method, device, spiel)
    mean = seconds + (periodic + reselect) / method.reselection_steps if method.family == "sft" else seconds
    return StepCost(flops, ewise, draws, host, seconds, reselect, mean)


def _optimizer_ops(shape: ModelShape, method: Method, spiel: SpielLayout, matrices: int,
                   entries: float) -> int:
    """Kernels the SFT optimizer launches a step: per layer (a loop over matrices), or per
    chunk of at most STEP_CHUNK_ENTRIES entries (multi-tensor), SftSM3's per matrix shape in
    each chunk besides (every shape counted in every chunk: an upper bound)."""
    chunks = math.ceil(entries / STEP_CHUNK_ENTRIES)
    casts = chunks * spiel.bf16_values_ops_per_chunk if method.quantized else 0  # bf16 deltas
    if method.selection == "ag":
        return matrices * spiel.adamw_ops_per_layer + chunks * spiel.adamw_ops_per_chunk + casts
    shapes = len({(d_in, d_out) for _, d_in, d_out in shape.block_linears()})
    return (matrices * spiel.sm3_ops_per_layer + casts
            + chunks * (spiel.sm3_ops_per_chunk + shapes * spiel.sm3_ops_per_shape))


def time_vs_floor(shape: ModelShape, method: Method, setup: Setup, device: Device,
                  spiel: SpielLayout | None = None, delta_grad: str | None = None,
                  plain: bool = False) -> float:
    """The method's mean step (``plain``: its plain step) over its floor's (4-bit floor for
    4-bit methods), same setup."""
    own = step_cost(shape, method, setup, device, spiel, delta_grad)
    return (own.seconds if plain else own.mean_seconds) / step_cost(shape, floor_of(method), setup, device).seconds
