"""Hardening round 2, item 2 (distillation): cached teacher logits are validated before any use.

The cache is written with a checksum; a file with NaN values, another shape, edited values, no checksum
or torn bytes is computed again (with one warning line), and a teacher whose own outputs are NaN is
refused with one line. The tiny fine-tuned BERT from conftest is the teacher.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.distill.config import DistillConfig
from edgetune.distill.teacher_logits import teacher_outputs, teacher_record
from edgetune.distill.train import distill
from edgetune.errors import ConfigError
from edgetune.finetune.config import FinetuneConfig


@pytest.fixture(scope="module")
def labelled(small_banking77):
    return load_labelled_data(DataConfig(train=str(small_banking77["train"])))


def _outputs(teacher_dir: Path, labelled, cache_dir: Path):
    teacher = teacher_record(teacher_dir, labelled.label_names)
    return teacher_outputs(teacher_dir, teacher, labelled.train.texts, labelled.label_names, max_length=64,
                           batch_size=16, with_pooled=False, cache_dir=cache_dir)


def _rewrite(path: Path, **arrays) -> None:
    with numpy.load(path) as stored:
        contents = {name: stored[name] for name in stored.files}
    contents.update(arrays)
    with open(path, "wb") as handle:  # numpy.savez on a path would append another .npz
        numpy.savez(handle, **contents)


def _with_nan(logits: numpy.ndarray) -> numpy.ndarray:
    broken = logits.copy()
    broken[3, 1] = numpy.nan
    return broken


def _checksum_of(logits, pooled) -> numpy.ndarray:
    from edgetune.distill.teacher_logits import _checksum

    return numpy.array(_checksum(logits, pooled))


CORRUPTIONS = {
    # NaN written over a value, the stale checksum left in place: the checksum catches it.
    "nan_stale_checksum": lambda path, logits, pooled: _rewrite(path, logits=_with_nan(logits)),
    # NaN written together with a matching checksum: the finiteness check catches it.
    "nan_matching_checksum": lambda path, logits, pooled: _rewrite(
        path, logits=_with_nan(logits), checksum=_checksum_of(_with_nan(logits), pooled)),
    # Finite values changed, the checksum left stale: only the checksum can tell.
    "edited_value": lambda path, logits, pooled: _rewrite(path, logits=logits + numpy.float32(0.5)),
    "wrong_shape": lambda path, logits, pooled: _rewrite(
        path, logits=logits[:-1], checksum=_checksum_of(logits[:-1], pooled)),
    "no_checksum": lambda path, logits, pooled: path.write_bytes(_without_checksum(path)),
    "torn_file": lambda path, logits, pooled: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
}


def _without_checksum(path: Path) -> bytes:
    import io

    with numpy.load(path) as stored:
        buffer = io.BytesIO()
        numpy.savez(buffer, logits=stored["logits"], pooled=stored["pooled"])
    return buffer.getvalue()


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupted_logits_cache_is_computed_again_never_used(tmp_path, caplog, labelled, tiny_finetuned_dir,
                                                               corruption):
    clean = _outputs(tiny_finetuned_dir, labelled, tmp_path)
    assert not clean.from_cache and numpy.isfinite(clean.logits).all()
    with numpy.load(clean.cache_path) as stored:
        assert "checksum" in stored.files
        raw_logits, raw_pooled = stored["logits"], stored["pooled"]
    CORRUPTIONS[corruption](clean.cache_path, raw_logits, raw_pooled)

    with caplog.at_level(logging.WARNING, logger="edgetune.distill.teacher_logits"):
        again = _outputs(tiny_finetuned_dir, labelled, tmp_path)
    assert not again.from_cache, "a corrupted cache must not be used"
    numpy.testing.assert_allclose(again.logits, clean.logits, rtol=1e-5, atol=1e-6)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unusable" in warnings[0] and "\n" not in warnings[0]
    # The recomputed file replaced the bad one and is used from now on.
    assert _outputs(tiny_finetuned_dir, labelled, tmp_path).from_cache


def test_a_teacher_whose_outputs_are_nan_is_refused_and_nothing_is_cached(tmp_path, labelled, tiny_finetuned_dir):
    broken_teacher = tmp_path / "teacher"
    shutil.copytree(tiny_finetuned_dir, broken_teacher)
    model = AutoModelForSequenceClassification.from_pretrained(broken_teacher)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    model.save_pretrained(broken_teacher, safe_serialization=True)
    cache_dir = tmp_path / "cache"
    with pytest.raises(ConfigError) as raised:
        _outputs(broken_teacher, labelled, cache_dir)
    message = str(raised.value)
    assert "\n" not in message and str(broken_teacher) in message and "NaN or infinite" in message
    assert "fine-tune the teacher again" in message
    assert not list(cache_dir.glob("*.npz"))


def test_distill_over_a_nan_logits_cache_writes_a_finite_student(tmp_path, small_banking77, tiny_finetuned_dir,
                                                                  tiny_bert_dir):
    data = DataConfig(train=str(small_banking77["train"]))
    cache_dir = tmp_path / "cache"
    config = DistillConfig(teacher=str(tiny_finetuned_dir), teacher_cache_dir=str(cache_dir),
                           student=FinetuneConfig(model=str(tiny_bert_dir), epochs=1, batch_size=16,
                                                  early_stopping_patience=None))
    distill(data, config, tmp_path / "first")
    [cache_file] = cache_dir.glob("*.npz")
    with numpy.load(cache_file) as stored:
        _rewrite(cache_file, logits=numpy.full_like(stored["logits"], numpy.nan))

    result = distill(data, config, tmp_path / "second")
    assert not result.teacher_logits_from_cache
    from safetensors.torch import load_file

    for name, tensor in load_file(tmp_path / "second" / "model.safetensors").items():
        assert torch.isfinite(tensor).all(), name


def test_logits_cached_with_pooled_states_serve_a_run_without_them(tmp_path, labelled, tiny_finetuned_dir):
    teacher = teacher_record(tiny_finetuned_dir, labelled.label_names)
    with_pooled = teacher_outputs(tiny_finetuned_dir, teacher, labelled.train.texts, labelled.label_names,
                                  max_length=64, batch_size=16, with_pooled=True, cache_dir=tmp_path)
    assert not with_pooled.from_cache and with_pooled.pooled is not None
    # The representation loss off: the logits come from the file with pooled states, the teacher does not run.
    without = _outputs(tiny_finetuned_dir, labelled, tmp_path)
    assert without.from_cache and without.cache_path == with_pooled.cache_path and without.pooled is None
    numpy.testing.assert_array_equal(without.logits, with_pooled.logits)
    assert sorted(path.name for path in tmp_path.iterdir()) == [with_pooled.cache_path.name]
    # The other way round a logits-only file cannot serve: pooled states are computed (and cached apart).
    assert not _outputs(tiny_finetuned_dir, labelled, tmp_path / "logits-only").from_cache
    assert not teacher_outputs(tiny_finetuned_dir, teacher, labelled.train.texts, labelled.label_names, max_length=64,
                               batch_size=16, with_pooled=True, cache_dir=tmp_path / "logits-only").from_cache
    assert len(list((tmp_path / "logits-only").iterdir())) == 2
