"""`SftTrainer`: ``transformers.Trainer`` for an :class:`sft.SftModel`.

- **Checkpoints hold the deltas only**: ``sft_model.safetensors`` and ``sft_config.json``
  (indices, values, ages), beside the Trainer's own optimizer, scheduler, RNG and state files
  and the selector's ``sft_selector.safetensors``. A plain Trainer writes the whole model's
  state dict, which is as large as the base model and fails on tied embeddings ("Some
  tensors share memory"). ``trainer.train(resume_from_checkpoint=...)`` puts the deltas
  back in place (:meth:`sft.SftModel.load_deltas`) before the Trainer loads the optimizer
  state into the same tensors; ``load_best_model_at_end`` works the same way.
- **The selector runs by itself**: an :class:`sft.SftTrainerCallback` is added unless one is
  given, and without ``optimizers`` / ``optimizer_cls_and_kwargs`` the optimizer is
  :class:`sft.SftAdamW` (SFT-AG) or :class:`sft.SftSM3` (SFT-MA) at ``args.learning_rate``
  and ``args.weight_decay`` (and Adam's betas and epsilon from ``args``).
- **Logs**: each log entry gets the selector's statistics (``sft/...``, see
  :meth:`sft.SftSelector.log_entries`), so ``report_to="tensorboard"`` or ``"wandb"`` shows
  SpIEL at work.

:class:`SftTrainerMixin` gives the same to another Trainer subclass (``class
MyTrainer(SftTrainerMixin, SomeTrainer)``). For models that are not an ``SftModel`` every
method falls back to the Trainer's own. Needs ``accelerate`` (``pip install
"spiel-sft[trainer]"``), as any ``transformers.Trainer``.
"""

from __future__ import annotations

import os

import torch
from transformers import Trainer

from .callback import SftTrainerCallback
from .model import SftModel
from .optim import SftAdamW
from .selection import SftSelector

TRAINING_ARGS_NAME = "training_args.bin"  # as transformers.trainer.TRAINING_ARGS_NAME


def unwrap_sft_model(model) -> SftModel | None:
    """The :class:`SftModel` inside DDP / torch.compile wrappers, or None."""
    seen = model
    while seen is not None and not isinstance(seen, SftModel):
        seen = getattr(seen, "module", None) or getattr(seen, "_orig_mod", None)
    return seen


class SftTrainerMixin:
    """Delta-only checkpoints, the selector's callback and logs, and the SFT optimizer by
    default; mix in before a ``transformers.Trainer`` class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        sft = unwrap_sft_model(self.model)
        if sft is None:
            return
        if self.sft_callback is None:
            self.add_callback(SftTrainerCallback(SftSelector(sft)))
        # The Trainer reads label names from the model's class; the wrapper's forward is
        # generic, so read them from the base model's class (as for a peft model).
        from transformers.utils import can_return_loss, find_labels

        if self.args.label_names is None:
            self.label_names = find_labels(type(sft.base_model))
        self.can_return_loss = can_return_loss(type(sft.base_model))

    @property
    def sft_callback(self) -> SftTrainerCallback | None:
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, SftTrainerCallback):
                return callback
        return None

    @property
    def sft_selector(self) -> SftSelector | None:
        callback = self.sft_callback
        return None if callback is None else callback.selector

    # ---- the optimizer ----------------------------------------------------------------

    def create_optimizer(self, model=None):
        sft = unwrap_sft_model(self.model if model is None else model)
        if sft is None or self.optimizer is not None or self.optimizer_cls_and_kwargs is not None:
            return super().create_optimizer(model)
        args, cls = self.args, sft.sft_config.optimizer_class
        adam = {"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}
        self.optimizer = cls(sft.trainable_parameters_groups, lr=args.learning_rate,
                             weight_decay=args.weight_decay, **(adam if cls is SftAdamW else {}))
        return self.optimizer

    # ---- checkpoints ------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        sft = unwrap_sft_model(self.model)
        if sft is None:
            return super()._save(output_dir, state_dict)
        if not self.args.should_save:  # the Trainer calls _save on every process
            return None
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        sft.save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        return None

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        sft = unwrap_sft_model(self.model if model is None else model)
        if sft is None:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        # In place: the optimizer, loaded next by the Trainer, holds these `values` tensors.
        # The selector's state comes back in SftTrainerCallback.on_train_begin.
        sft.load_deltas(resume_from_checkpoint)
        return None

    def _load_best_model(self) -> None:
        sft = unwrap_sft_model(self.model)
        if sft is None:
            return super()._load_best_model()
        sft.load_deltas(self.state.best_model_checkpoint)
        return None

    # ---- logs -------------------------------------------------------------------------

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        callback = self.sft_callback
        if callback is not None:
            logs.update(callback.log_entries(self.state))
        return super().log(logs, *args, **kwargs)


class SftTrainer(SftTrainerMixin, Trainer):
    """``transformers.Trainer`` for an :class:`sft.SftModel` (see the module docstring)."""
