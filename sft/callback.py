"""`SftTrainerCallback`: runs :class:`sft.SftSelector` inside ``transformers.Trainer``.

The selector needs the SFT optimizer. Either build it yourself and pass
``Trainer(..., optimizers=(opt, scheduler))``, or let the Trainer build it with
``Trainer(..., optimizer_cls_and_kwargs=(SftAdamW, {"lr": ...}))``; the callback picks the
optimizer (unwrapping accelerate's wrapper) and ``state.max_steps`` up at train begin when the
selector was created without them. ``on_step_end`` fires once per optimizer step, after
gradient accumulation, which is what the selector expects.

Checkpoints: at each Trainer save the selector's state goes into the checkpoint folder, and
``trainer.train(resume_from_checkpoint=...)`` picks it up again (the Trainer itself restores
the deltas, which are in the model's state dict, and the optimizer state).
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from .selection import SELECTOR_NAME, SftSelector


def _checkpoint_dir(args, state) -> Path:
    return Path(args.output_dir) / f"checkpoint-{state.global_step}"


class SftTrainerCallback(TrainerCallback):
    def __init__(self, selector: SftSelector):
        self.selector = selector

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.selector.bind(optimizer=optimizer, total_steps=state.max_steps)
        if state.global_step == self.selector.completed_steps:
            return
        checkpoint = _checkpoint_dir(args, state)
        if self.selector.completed_steps == 0 and (checkpoint / SELECTOR_NAME).is_file():
            self.selector.load(checkpoint)
            return
        raise RuntimeError(
            f"the Trainer starts at step {state.global_step} but the SftSelector has seen "
            f"{self.selector.completed_steps} steps and {checkpoint / SELECTOR_NAME} does not exist"
        )

    def on_step_end(self, args, state, control, **kwargs):
        self.selector.step()

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            self.selector.save(_checkpoint_dir(args, state))
