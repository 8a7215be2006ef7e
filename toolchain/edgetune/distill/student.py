"""Students: a pretrained small model as it is, or a shallower one cut from a model's own layers.

Keeping a subset of an encoder's layers and initialising them from the kept layers (embeddings,
pooler and the chosen blocks copied as they are) is how DistilBERT was built: the student starts
close to its source instead of from random weights, and each dropped layer saves ~1/N of the
encoder's latency. Works for BERT-like encoders (BERT, RoBERTa, MPNet, ELECTRA, DistilBERT, ...).
"""

from __future__ import annotations

from edgetune.errors import ConfigError


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """`keep` of `total` layers, spread evenly from the bottom: 3 of 6 -> 0,2,4; 6 of 12 -> 0,2,...,10."""
    if not 1 <= keep <= total:
        raise ConfigError(f"num_layers: {keep} is not between 1 and the model's {total} layers")
    return [index * total // keep for index in range(keep)]


def chosen_layers(total: int, layers: tuple[int, ...] | None, num_layers: int | None) -> list[int] | None:
    """The layer indices a config asks to keep, or None for the whole model."""
    if num_layers is not None:
        return evenly_spaced_layers(total, num_layers)
    if layers is None:
        return None
    beyond = [index for index in layers if index >= total]
    if beyond:
        raise ConfigError(f"layers: {beyond[0]} does not exist; the model has {total} layers, "
                          f"numbered 0 to {total - 1}")
    return list(layers)


def layer_stack(model):
    """The ModuleList of transformer blocks of a BERT-like encoder (or of its classifier wrapper)."""
    base = getattr(model, "base_model", model)
    for path in (("encoder", "layer"), ("transformer", "layer")):
        module = base
        for name in path:
            module = getattr(module, name, None)
        if module is not None:
            return module
    raise ConfigError(
        f"layers: keeping a subset of layers works for BERT-like encoders; {type(model).__name__} has no "
        "encoder.layer stack - use a BERT, RoBERTa, MPNet or DistilBERT model, or drop layers/num_layers"
    )


def keep_layers(model, layers: tuple[int, ...] | None, num_layers: int | None) -> list[int] | None:
    """Cut `model` down to the chosen layers in place; return the kept indices (None when all are kept)."""
    import torch

    stack = layer_stack(model)
    kept = chosen_layers(len(stack), layers, num_layers)
    if kept is None:
        return None
    new_stack = torch.nn.ModuleList([stack[index] for index in kept])
    parent = getattr(model, "base_model", model)
    parent = parent.encoder if hasattr(parent, "encoder") else parent.transformer
    parent.layer = new_stack
    # Saved configs must describe the cut model so that from_pretrained rebuilds it with these weights.
    model.config.num_hidden_layers = len(kept)
    return kept
