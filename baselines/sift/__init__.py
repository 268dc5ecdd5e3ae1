"""SIFT (Song et al. 2023, "Sparse is Enough in Fine-tuning Pre-trained Large Language Models").

Written here because no library provides it: a fixed sparse mask per weight matrix, chosen as
the top |gradient| entries of the first micro-batch(es), then AdamW on those entries only,
applied to the weights in place. Gradients are gathered to the masked entries by a hook
as soon as each weight's dense gradient exists, and the dense gradient is freed at once, so
at most one layer's dense gradient lives at a time (the paper's memory-efficient hooks).
"""
from baselines.sift.delta import apply_sift_delta, save_sift_delta
from baselines.sift.optim import SiftAdamW

__all__ = ["SiftAdamW", "apply_sift_delta", "save_sift_delta"]
