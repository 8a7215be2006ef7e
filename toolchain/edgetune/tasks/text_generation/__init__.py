"""Chat models (text generation) behind the task seam: a folder, one module per stage.

A causal language model with a chat template, fine-tuned on prompt -> response conversations
(SFT), exported with a KV cache through onnxruntime-genai's model builder, quantised to int8/int4
under a quality budget and bundled as `task: text-generation` for the runtime's generation bundle
(`edgetune_runtime.tasks.generation`). The stage functions of this task live beside this file;
`TextGenerationTask` is what the task-neutral stages look up by name.
"""

from __future__ import annotations

from edgetune.tasks.task import Task

TEXT_GENERATION = "text-generation"


class TextGenerationTask(Task):
    """A `*ForCausalLM` model with a chat template; its artifacts carry `genai_config.json`."""

    name = TEXT_GENERATION
    bench_metrics = ("perplexity", "rouge_l", "intent_fidelity")

    def recognizes(self, model_config: dict) -> bool:
        return any(str(name).endswith("ForCausalLM") for name in model_config.get("architectures") or ())
