"""Validation loss as a person reads it: perplexity of the reference answers, after each evaluation and at the end."""

from __future__ import annotations

import logging
import math

from transformers import TrainerCallback

log = logging.getLogger("edgetune.tasks.text_generation.sft")


def loss_metrics(evaluation: dict, prefix: str = "eval") -> dict:
    """Mean loss per answer token, its perplexity, and TRL's next-token accuracy on the answers.

    `prefix` is the evaluation's `metric_key_prefix` (eval_loss, test_loss, ...).
    """
    loss = float(evaluation[f"{prefix}_loss"])
    # exp overflows past ~709; a loss that high is a broken model, reported as an infinite perplexity.
    metrics = {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 3) if loss < 700 else float("inf")}
    if f"{prefix}_mean_token_accuracy" in evaluation:
        metrics["mean_token_accuracy"] = round(float(evaluation[f"{prefix}_mean_token_accuracy"]), 4)
    return metrics


class ValidationPerplexityLog(TrainerCallback):
    """Logs each evaluation's validation loss and perplexity (the progress bar shows only the latest loss)."""

    def __init__(self) -> None:
        self.training = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.training = True

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False  # the final scoring of the best checkpoint is reported by the stage itself

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.training and state.is_world_process_zero and metrics and "eval_loss" in metrics:
            figures = loss_metrics(metrics)
            log.info("step %d: validation loss %.4f, perplexity %.2f", state.global_step, figures["loss"],
                     figures["perplexity"])
