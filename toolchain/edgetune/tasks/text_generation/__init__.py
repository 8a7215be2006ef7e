"""Chat models (text generation) behind the task seam: a folder, one module per stage.

A causal language model with a chat template, fine-tuned on prompt -> response conversations
(SFT), exported with a KV cache through onnxruntime-genai's model builder, quantised to int8/int4
under a quality budget and bundled as `task: text-generation` for the runtime's generation bundle
(`edgetune_runtime.tasks.generation`). The stage functions of this task live beside this file;
`TextGenerationTask` is what the task-neutral stages look up by name.
"""

from __future__ import annotations

import dataclasses

from edgetune.tasks.task import Task

TEXT_GENERATION = "text-generation"


class TextGenerationTask(Task):
    """A `*ForCausalLM` model with a chat template; its artifacts carry `genai_config.json`."""

    name = TEXT_GENERATION
    bench_metrics = ("perplexity", "rouge_l", "intent_fidelity")

    def recognizes(self, model_config: dict) -> bool:
        return any(str(name).endswith("ForCausalLM") for name in model_config.get("architectures") or ())

    # bundle (bundle.py)
    def bundle_config(self, config):
        from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig

        if isinstance(config, GenerationBundleConfig):
            return config
        # A plain BundleConfig (a classification recipe's, the Python API's default) keeps what it set.
        return GenerationBundleConfig(**{item.name: getattr(config, item.name) for item in dataclasses.fields(config)})

    def golden_inputs(self, record: dict, source_dir, config) -> list:
        from edgetune.tasks.text_generation.bundle import golden_prompts

        return golden_prompts(record, source_dir, config)

    def bundle_files(self, record: dict, source_dir, staging, config) -> dict:
        from edgetune.tasks.text_generation.bundle import bundle_files

        return bundle_files(record, source_dir, staging, config)

    def golden_examples(self, runtime_bundle, inputs: list) -> list[dict]:
        from edgetune.tasks.text_generation.bundle import golden_examples

        return golden_examples(runtime_bundle, inputs)

    def card_summary(self, manifest: dict) -> str:
        section = manifest["generation"]
        decoding = "greedy" if section["sampling"]["temperature"] == 0 else "sampled"
        return (f"A chat model: up to {section['max_new_tokens']} new tokens by default, context "
                f"{section['context_length']} tokens, {decoding} decoding by default.")

    def card_measured(self, manifest: dict, variants: dict | None) -> list[str]:
        from edgetune.tasks.text_generation.bundle import card_measured

        return card_measured(manifest, variants)

    def card_usage(self, manifest: dict) -> list[str]:
        from edgetune.tasks.text_generation.bundle import card_usage

        return card_usage(manifest)
