"""`SftTrainerCallback`: runs :class:`sft.SftSelector` inside ``transformers.Trainer``.

The selector needs the SFT optimizer. Either build it yourself and pass
``Trainer(..., optimizers=(opt, scheduler))``, or let the Trainer build it with
``Trainer(..., optimizer_cls_and_kwargs=(SftAdamW, {"lr": ...}))``; the callback picks the
optimizer (unwrapping accelerate's wrapper) and ``state.max_steps`` up at train begin when the
selector was created without them. ``on_step_end`` fires once per optimizer step, after
gradient accumulation, which is what the selector expects.
"""

from __future__ import annotations

from transformers import TrainerCallback

from .selection import SftSelector


class SftTrainerCallback(TrainerCallback):
    def __init__(self, selector: SftSelector):
        self.selector = selector

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step != self.selector.completed_steps:
            raise RuntimeError(
                f"the Trainer starts at step {state.global_step} but the SftSelector has seen "
                f"{self.selector.completed_steps} steps; resuming a run mid-way is not supported"
            )
        self.selector.bind(optimizer=optimizer, total_steps=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        self.selector.step()
