"""Text generation on a device: a KV-cache decoder graph driven by onnxruntime and numpy (no torch, no Jinja).

`bundle.GenerationBundle` is what `Bundle.load` returns for a `text-generation` bundle; `decoder.py` holds
the one decode loop, `chat_template.py` renders conversations, `sampling.py` picks tokens, `streaming.py`
turns tokens into text as they come, `section.py` documents the manifest's `generation` section;
`bench.py` is `edgetune-runtime bench` for these bundles (its prompts from `bench_prompts.py`), and
`reference_scores.py` scores answers against references for it and for the toolchain's evaluation.
"""
