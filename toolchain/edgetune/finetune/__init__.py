"""Fine-tuning for sequence classification: full or LoRA, CPU or CUDA, single or multi-process.

Kept import-free on purpose: `edgetune.finetune.config` must load without torch.
"""
