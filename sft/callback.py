"""`SftTrainerCallback`: runs :class:`sft.SftSelector` inside ``transformers.Trainer``.

Prefer :class:`sft.SftTrainer`, which adds this callback itself, saves delta-only checkpoints
and logs the selector's statistics to every reporter. With a plain ``Trainer`` add it yourself.

The selector needs the SFT optimizer. Either build it yourself and pass
``Trainer(..., optimizers=(opt, scheduler))``, or let the Trainer build it with
``Trainer(..., optimizer_cls_and_kwargs=(SftAdamW, {"lr": ...}))``; the callback picks the
optimizer (unwrapping accelerate's wrapper, whose GradScaler it also takes under fp16) and
``state.max_steps`` up at train begin when the selector was created without them.
``on_step_end`` fires once per optimizer step, after gradient accumulation, which is what the
selector expects.

Checkpoints: at each Trainer save the selector's state goes into the checkpoint folder, and
``trainer.train(resume_from_checkpoint=...)`` picks it up again. The deltas themselves are
saved by ``SftTrainer`` (a plain Trainer saves the whole model, which fails on tied
embeddings).

Logs: ``on_log`` adds :meth:`sft.SftSelector.log_entries` (reselections, entries dropped and
grown, mean |delta|, ages) to the Trainer's log history and to the callbacks after this one;
``SftTrainer`` adds them before any reporter (TensorBoard, W&B) sees the logs.
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
        self._logged_step = -1

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.selector.bind(optimizer=optimizer, total_steps=state.max_steps,
                           micro_batches_per_step=args.gradient_accumulation_steps)
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

    def log_entries(self, state) -> dict[str, float]:
        """The selector's statistics, once per global step (later calls at the same step, e.g.
        for evaluation logs, give nothing)."""
        if state.global_step == self._logged_step:
            return {}
        self._logged_step = state.global_step
        return self.selector.log_entries()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        entries = self.log_entries(state)
        if entries:
            logs.update(entries)
            if state.log_history:
                state.log_history[-1].update(entries)
