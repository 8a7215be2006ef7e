"""A single progress bar for training with the live loss and validation metric beside it."""

from __future__ import annotations

from transformers import TrainerCallback


class LiveProgressCallback(TrainerCallback):
    """tqdm bar over optimiser steps; replaces the trainer's bar, which prints every log as a line."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.bar = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="fine-tune", unit="step",
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.postfix["loss"] = f"{logs['loss']:.3f}"
        key = f"eval_{self.metric}"
        if key in logs:
            self.postfix[f"val_{self.metric}"] = f"{logs[key]:.4f}"
        self.postfix["epoch"] = f"{state.epoch:.2f}"
        self.bar.set_postfix(self.postfix, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
