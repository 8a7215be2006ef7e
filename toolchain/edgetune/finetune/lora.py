"""LoRA adapters through peft, with target modules chosen per architecture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from edgetune.finetune.config import LoraSettings

if TYPE_CHECKING:
    import torch

# Every linear layer of the attention and feed-forward blocks: adapting only q/v (the LoRA paper's
# default for GPT-3) loses accuracy on small encoders, where each layer carries more of the task.
TARGET_MODULES_BY_ARCHITECTURE: dict[str, tuple[str, ...]] = {
    "bert": ("query", "key", "value", "dense"),
    "roberta": ("query", "key", "value", "dense"),
    "xlm-roberta": ("query", "key", "value", "dense"),
    "electra": ("query", "key", "value", "dense"),
    "mpnet": ("q", "k", "v", "o", "dense"),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj", "dense"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def target_modules_for(model_type: str, settings: LoraSettings) -> list[str] | str:
    """The configured modules, the known set for this architecture, or peft's 'all-linear'."""
    if settings.target_modules:
        return list(settings.target_modules)
    return list(TARGET_MODULES_BY_ARCHITECTURE.get(model_type, ())) or "all-linear"


def add_lora_adapters(model: torch.nn.Module, settings: LoraSettings,
                      task_type: Literal["SEQ_CLS", "CAUSAL_LM"] = "SEQ_CLS") -> torch.nn.Module:
    """Wrap a model with trainable adapters: a sequence classifier (its new head trains in full) or a causal LM."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=task_type,  # SEQ_CLS also keeps the new classifier head fully trainable
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_modules_for(model.config.model_type, settings),
    )
    return get_peft_model(model, config)


def merge_lora_adapters(model: torch.nn.Module) -> torch.nn.Module:
    """Fold the adapters into the base weights so later stages see a plain transformers model."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model
