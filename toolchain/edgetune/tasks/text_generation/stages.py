"""The chat task's recipe stages (`task: chat`; registered in `edgetune.recipes.tasks`).

The same library functions and config classes the CLI runs (`edgetune finetune --task chat`,
`edgetune export` / `quantize` / `bundle` on a chat artifact, `edgetune evaluate --task chat`), so
the command line and a recipe agree; the adapters are the classification table's.
"""

from __future__ import annotations

from edgetune.recipes.stages import StageSpec, call_on_input, call_on_input_with_data, call_training
from edgetune.tasks.text_generation.bench_stage import ChatBenchStageConfig
from edgetune.tasks.text_generation.bundle_config import GenerationBundleConfig
from edgetune.tasks.text_generation.evaluate_stage import ChatEvaluateStageConfig
from edgetune.tasks.text_generation.export_config import ChatExportConfig
from edgetune.tasks.text_generation.quantize_config import ChatQuantizeConfig
from edgetune.tasks.text_generation.sft_config import ChatFinetuneConfig

CHAT_EXPORT_STAGES: dict[str, StageSpec] = {
    spec.kind: spec for spec in (
        StageSpec("export", ChatExportConfig, "edgetune.tasks.text_generation.export:export_chat", "export", "model",
                  "onnx", call_on_input),
        StageSpec("quantize", ChatQuantizeConfig, "edgetune.tasks.text_generation.quantize:quantize_chat", "quantize",
                  "onnx", "onnx", call_on_input),
    )
}


CHAT_STAGES: dict[str, StageSpec] = {
    "finetune": StageSpec("finetune", ChatFinetuneConfig, "edgetune.tasks.text_generation.sft:finetune_chat",
                          "finetune", "data", "model", call_training, model_fields=("model",)),
    **CHAT_EXPORT_STAGES,
    "bundle": StageSpec("bundle", GenerationBundleConfig, "edgetune.bundle.build:build_bundle", "bundle", "onnx",
                        "bundle", call_on_input),
    "evaluate": StageSpec("evaluate", ChatEvaluateStageConfig,
                          "edgetune.tasks.text_generation.evaluate_stage:evaluate_stage", "evaluate", "onnx",
                          "evaluation", call_on_input, model_fields=("base",),
                          reference_fields={"finetuned": "model"},
                          cli_function="edgetune.tasks.text_generation.evaluate:evaluate_chat"),
    "bench": StageSpec("bench", ChatBenchStageConfig, "edgetune.tasks.text_generation.bench_stage:bench_chat_bundle",
                       "bench", "bundle", "bench", call_on_input_with_data, cli_program="edgetune-runtime",
                       cli_function="edgetune_runtime.tasks.generation.bench:bench"),
}
