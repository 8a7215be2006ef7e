"""The batch-1 path's private ONNX Runtime binding: probed once at load, the public `run` when it is absent or wrong.

An ONNX Runtime release that renames `InferenceSession._sess.run`, changes its signature or what it
returns must not break a single prediction: each case below is a real session whose binding was
made so, and the bundle must predict exactly what a bundle on the public `run` predicts.
"""

from __future__ import annotations

import numpy
import pytest

import edgetune_runtime.envelope
from conftest import banking77_subset
from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle, ClassificationBundle
from edgetune_runtime.manifest import BundleManifest
from edgetune_runtime.session import create_session
from edgetune_runtime.tasks import bundle_class

TEXTS = [row["text"] for row in banking77_subset("test", 4, 3, seed=5)] + ["café au lait, s'il vous plaît"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir):
    output = tmp_path_factory.mktemp("binding_bundles") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(golden_examples=4))
    return output


class _BindingWithout:
    """ONNX Runtime's binding object as a release without (or with a changed) `run` would have it."""

    def __init__(self, binding, run=None) -> None:
        self._binding = binding
        if run is not None:
            self.run = run

    def __getattr__(self, name: str):
        if name == "run":
            raise AttributeError(name)
        return getattr(self._binding, name)


def _sessions_whose_binding(monkeypatch, changed_run) -> None:
    """Make every bundle session's `_sess` lack `run` (`changed_run` None) or run `changed_run` instead.

    The public `run` keeps working through the real binding, as it would in such a release.
    """
    def create(*args, **kwargs):
        session = create_session(*args, **kwargs)
        real_binding = session._sess
        session._sess = _BindingWithout(real_binding, changed_run(real_binding) if changed_run else None)
        # The public `run` as such a release would have it: through its own, working binding.
        session.run = lambda names, feeds, options=None: real_binding.run(names, feeds, options)
        return session

    monkeypatch.setattr(edgetune_runtime.envelope, "create_session", create)


def _assert_predicts_as(bundle: Bundle, reference: Bundle) -> None:
    for text in TEXTS:  # the flat path (ASCII, top 1), predict_proba's one-text path and top-k
        assert bundle.predict([text]) == reference.predict([text])
        numpy.testing.assert_array_equal(bundle.predict_proba([text]), reference.predict_proba([text]))
        assert bundle.predict([text], top_k=3) == reference.predict([text], top_k=3)
    numpy.testing.assert_array_equal(bundle.predict_proba(TEXTS), reference.predict_proba(TEXTS))
    assert bundle.verify().passed


def test_a_working_binding_is_used_and_the_public_run_is_the_reference(bundle_dir):
    bundle = Bundle.load(bundle_dir, intra_op_threads=1)
    assert isinstance(bundle, ClassificationBundle)
    assert bundle.uses_compiled_binding, "the probe refused ONNX Runtime's binding: the batch-1 path got slower"
    assert bundle._run_batch1 == bundle.session._sess.run
    # The reference: the same bundle made to use the public `run` (the fallback's runner).
    public = Bundle.load(bundle_dir, intra_op_threads=1)
    public._run_batch1 = public.session.run
    _assert_predicts_as(bundle, public)


@pytest.mark.parametrize("changed_run", [
    None,  # renamed: `_sess` has no `run`
    lambda binding: "not callable",
    lambda binding: lambda names, feeds, options: [numpy.zeros_like(out) for out in binding.run(names, feeds, options)],
    lambda binding: lambda names, feeds, options: binding.run(names, feeds, options)[0],  # an array, not a list
    lambda binding: lambda names, feeds: binding.run(names, feeds, None),  # a changed signature: raises TypeError
], ids=["absent", "not-callable", "wrong-values", "wrong-type", "changed-signature"])
def test_a_missing_or_changed_binding_falls_back_to_the_public_run(bundle_dir, monkeypatch, changed_run):
    reference = Bundle.load(bundle_dir, intra_op_threads=1)
    _sessions_whose_binding(monkeypatch, changed_run)
    bundle = Bundle.load(bundle_dir, intra_op_threads=1)
    assert not bundle.uses_compiled_binding
    assert bundle._run_batch1 == bundle.session.run
    _assert_predicts_as(bundle, reference)


def test_the_toolchains_unsealed_construction_probes_too_and_predicts_as_a_loaded_bundle(bundle_dir):
    manifest = BundleManifest.from_dict(Bundle.load(bundle_dir).manifest, "manifest.json").to_dict()  # unsealed
    for built in (bundle_class("text-classification")(bundle_dir, manifest), Bundle(bundle_dir, manifest)):
        assert type(built) is ClassificationBundle and built.uses_compiled_binding
        _assert_predicts_as(built, Bundle.load(bundle_dir))
