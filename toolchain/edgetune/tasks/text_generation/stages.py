"""The chat task's export and quantize stages, for the chat recipes' stage table (`edgetune.recipes.tasks`).

The same library functions and config classes `edgetune export` / `edgetune quantize` run when the
input artifact is a chat model, so the CLI and a `task: chat` recipe agree. The table's other entries
(fine-tuning, bundling) come from their own modules; these two are merged in with `**CHAT_EXPORT_STAGES`.
"""

from __future__ import annotations

from edgetune.recipes.stages import StageSpec, _call_on_input
from edgetune.tasks.text_generation.export_config import ChatExportConfig
from edgetune.tasks.text_generation.quantize_config import ChatQuantizeConfig

CHAT_EXPORT_STAGES: dict[str, StageSpec] = {
    spec.kind: spec for spec in (
        StageSpec("export", ChatExportConfig, "edgetune.tasks.text_generation.export:export_chat", "export", "model",
                  "onnx", _call_on_input),
        StageSpec("quantize", ChatQuantizeConfig, "edgetune.tasks.text_generation.quantize:quantize_chat", "quantize",
                  "onnx", "onnx", _call_on_input),
    )
}
