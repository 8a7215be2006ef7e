"""ORT mobile/minimal readiness of `edgetune bundle --ort`: model.ort needs only the operators its
required_operators.config lists, and runs, optimisers off as in a minimal build, to the bundle's own answers.

A minimal ONNX Runtime build cannot be compiled here; ORT's own tools stand in for it: the operators
a minimal build must include are read from model.ort with ORT's ORT-format reader (the input of its
`--include_ops_by_config` build option), and the shipped config is parsed with ORT's build-config parser.
"""

from __future__ import annotations

import numpy
import pytest

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle


@pytest.fixture(scope="module")
def ort_bundle(tmp_path_factory, tiny_export_dir):
    output = tmp_path_factory.mktemp("ort_bundle") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(ort_format=True, golden_examples=8))
    return output


def _operators(config_path) -> dict[str, set[str]]:
    """{domain: operators} of a required_operators.config, read by ORT's reduced-build config parser."""
    from onnxruntime.tools.reduced_build_config_parser import parse_config

    required, _ = parse_config(str(config_path))
    return {domain: set().union(*opsets.values()) for domain, opsets in required.items()}


def test_the_shipped_config_lists_every_operator_model_ort_needs(ort_bundle, tmp_path):
    from onnxruntime.tools.ort_format_model.utils import create_config_from_models

    needed_config = tmp_path / "needed.config"
    create_config_from_models([ort_bundle / "model.ort"], needed_config, enable_type_reduction=False)
    needed, shipped = _operators(needed_config), _operators(ort_bundle / "required_operators.config")
    assert needed and needed["ai.onnx"]
    for domain, operators in needed.items():
        assert operators <= shipped.get(domain, set()), (domain, operators - shipped.get(domain, set()))


def test_model_ort_loads_without_optimisers_and_gives_the_bundles_answers(ort_bundle):
    import onnxruntime

    bundle = Bundle.load(ort_bundle)
    assert bundle.typed_manifest.model_ort == "model.ort"
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.load_model_format", "ORT")
    # A minimal build runs the graph as saved: the optimisations were applied when model.ort was written.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(ort_bundle / "model.ort"), options,
                                           providers=["CPUExecutionProvider"])
    operators = _operators(ort_bundle / "required_operators.config")
    texts = [example[0] for example in bundle.golden_examples()]
    for text in texts:
        ids, _ = bundle.token_ids(text)
        feeds = {value.name: numpy.array([ids if value.name == "input_ids" else
                                          [1] * len(ids) if value.name == "attention_mask" else [0] * len(ids)],
                                         dtype=numpy.int64) for value in session.get_inputs()}
        probabilities = session.run([bundle.typed_manifest.section["probabilities_output"]], feeds)[0]
        numpy.testing.assert_allclose(probabilities, bundle.predict_proba([text]), atol=1e-5)
    assert "Softmax" in operators["ai.onnx"]  # the bundled graph's in-graph softmax is in the list too
