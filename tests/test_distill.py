"""Distillation with a tiny MPNet teacher and a tiny BERT student that read text with different vocabularies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch
import transformers
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from conftest import banking77_subset, read_banking77
from edgetune.cli.main import cli
from edgetune.data.config import DataConfig
from edgetune.data.load import load_labelled_data
from edgetune.distill.augment import augmented_texts
from edgetune.distill.config import DistillConfig
from edgetune.distill.loss import distillation_loss
from edgetune.distill.student import evenly_spaced_layers, keep_layers
from edgetune.distill.train import distill
from edgetune.errors import ConfigError, DataError, EdgetuneError
from edgetune.finetune.config import FinetuneConfig
from edgetune.finetune.train import finetune, work_directory_for


@pytest.fixture(scope="module")
def tiny_mpnet_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-48 MPNet with its own byte-pair vocabulary (unlike the student's WordPiece)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import MPNetConfig, MPNetForSequenceClassification, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny_mpnet")
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    bpe.train_from_iterator([row["text"] for row in read_banking77("train")[3000:6000]],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=specials))
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bpe.token_to_id("<s>")), ("</s>", bpe.token_to_id("</s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                        model_max_length=128, model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(directory)
    # MPNet numbers positions from pad_token_id + 1, so 128 tokens need more than 129 positions.
    config = MPNetConfig(vocab_size=bpe.get_vocab_size(), hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=160, pad_token_id=0)
    MPNetForSequenceClassification(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_teacher_dir(tmp_path_factory, tiny_mpnet_dir, small_banking77) -> Path:
    output = tmp_path_factory.mktemp("tiny_teacher") / "teacher"
    finetune(_data(small_banking77), FinetuneConfig(model=str(tiny_mpnet_dir), epochs=6, learning_rate=3e-3,
                                                    batch_size=8, early_stopping_patience=None), output)
    return output


def _data(small_banking77) -> DataConfig:
    return DataConfig(train=str(small_banking77["train"]), test=str(small_banking77["test"]))


def _config(teacher, student, cache_dir, **overrides) -> DistillConfig:
    student_settings = {"model": str(student), "epochs": 2, "learning_rate": 2e-3, "batch_size": 8,
                        "logging_steps": 5, "early_stopping_patience": None}
    student_settings |= overrides.pop("training", {})
    return DistillConfig(teacher=str(teacher), student=FinetuneConfig(**student_settings),
                         teacher_cache_dir=str(cache_dir), **overrides)


def _logits(model_dir: Path, texts: list[str]) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits


def test_distill_writes_an_ordinary_model_directory_and_caches_the_teacher_logits(
        tmp_path, small_banking77, tiny_teacher_dir, tiny_bert_dir):
    cache = tmp_path / "cache"
    teacher_vocab = set(AutoTokenizer.from_pretrained(tiny_teacher_dir).get_vocab())
    assert teacher_vocab != set(AutoTokenizer.from_pretrained(tiny_bert_dir).get_vocab())

    first = distill(_data(small_banking77), _config(tiny_teacher_dir, tiny_bert_dir, cache), tmp_path / "student")
    assert not first.teacher_logits_from_cache and first.teacher_cache_path.parent == cache
    names = {path.name for path in (tmp_path / "student").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "data_report.json",
            "training_curves.csv", "edgetune.json"} <= names
    manifest = json.loads((tmp_path / "student" / "edgetune.json").read_text())
    assert manifest["stage"] == "distill"
    assert manifest["labels"] == load_labelled_data(_data(small_banking77)).label_names
    recorded = manifest["distillation"]
    assert recorded["teacher"]["path"] == str(tiny_teacher_dir.resolve())
    assert recorded["teacher"]["manifest_sha256"] and recorded["teacher"]["weights_sha256"]
    assert (recorded["temperature"], recorded["alpha"], recorded["student_layers_kept"]) == (2.0, 0.5, None)
    assert manifest["base_model"]["path"] == str(tiny_bert_dir) and manifest["data"]["config"]["train"]
    # The student is a plain BERT with the student's own tokenizer: loadable without edgetune.
    texts = [row["text"] for row in banking77_subset("test", 4, 2)]
    assert _logits(tmp_path / "student", texts).shape == (8, 4)
    assert AutoTokenizer.from_pretrained(tmp_path / "student").get_vocab() == \
        AutoTokenizer.from_pretrained(tiny_bert_dir).get_vocab()

    # A second run (here through the CLI) reads the cached logits instead of running the teacher again.
    cached_at = first.teacher_cache_path.stat().st_mtime_ns
    outcome = CliRunner().invoke(cli, [
        "distill", "--train", str(small_banking77["train"]), "--teacher", str(tiny_teacher_dir),
        "--student", str(tiny_bert_dir), "--teacher-cache-dir", str(cache), "--epochs", "1", "--lr", "2e-3",
        "--batch-size", "8", "-o", str(tmp_path / "again"), "--temperature", "4", "--alpha", "0.9",
    ])
    assert outcome.exit_code == 0, outcome.output
    assert first.teacher_cache_path.stat().st_mtime_ns == cached_at
    assert [path.name for path in cache.iterdir()] == [first.teacher_cache_path.name]
    again = json.loads((tmp_path / "again" / "edgetune.json").read_text())["distillation"]
    assert (again["temperature"], again["alpha"]) == (4.0, 0.9)
    assert again["teacher_logits_cache"] == str(first.teacher_cache_path)


def test_transfer_text_is_labelled_by_the_teacher_and_trains_a_layer_subset_student(
        tmp_path, small_banking77, tiny_teacher_dir, tiny_bert_dir):
    transfer = tmp_path / "transfer.txt"
    extra_texts = [row["text"] for row in banking77_subset("train", 8, 5, seed=3)[20:]]  # 20 unlabelled texts
    transfer.write_text("\n".join(extra_texts) + "\n\n")
    config = _config(tiny_teacher_dir, tiny_bert_dir, tmp_path / "cache", transfer_text=str(transfer),
                     training={"num_layers": 1, "epochs": 1})
    result = distill(_data(small_banking77), config, tmp_path / "student")

    assert result.transfer_rows == 20 and not result.teacher_logits_from_cache
    with numpy.load(result.teacher_cache_path) as cached:
        assert cached["logits"].shape == (88 + 20, 4)  # training rows (after the validation carve) + transfer
    manifest = json.loads((tmp_path / "student" / "edgetune.json").read_text())
    assert manifest["training"]["steps"] == (88 + 20 + 7) // 8, "transfer rows are trained on"
    assert manifest["distillation"]["transfer_text"] == {"path": str(transfer), "rows": 20}
    assert manifest["distillation"]["student_layers_kept"] == [0]
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert student.config.num_hidden_layers == 1 and len(student.bert.encoder.layer) == 1


def test_augmented_copies_of_the_training_texts_are_labelled_by_the_teacher(
        tmp_path, small_banking77, tiny_teacher_dir, tiny_bert_dir):
    config = _config(tiny_teacher_dir, tiny_bert_dir, tmp_path / "cache", augment_copies=2,
                     training={"num_layers": 1, "epochs": 1})
    result = distill(_data(small_banking77), config, tmp_path / "student")

    # Only the training split is perturbed (validation copies would leak into model selection).
    train_texts = load_labelled_data(_data(small_banking77)).train.texts
    expected = augmented_texts(train_texts, 2, 0.1, config.student.seed)
    assert result.augmented_rows == len(expected) > 88, "about two copies per training text"
    with numpy.load(result.teacher_cache_path) as cached:
        assert cached["logits"].shape == (88 + len(expected), 4)
    manifest = json.loads((tmp_path / "student" / "edgetune.json").read_text())
    assert manifest["training"]["steps"] == (88 + len(expected) + 7) // 8, "augmented rows are trained on"
    assert manifest["distillation"]["augmentation"] == {"copies": 2, "word_probability": 0.1, "rows": len(expected)}


def test_rows_without_a_hard_label_are_left_out_when_no_loss_reads_them(
        tmp_path, small_banking77, tiny_teacher_dir, tiny_bert_dir):
    transfer = tmp_path / "transfer.txt"
    transfer.write_text("\n".join(row["text"] for row in banking77_subset("train", 8, 5, seed=3)[20:]) + "\n")
    config = _config(tiny_teacher_dir, tiny_bert_dir, tmp_path / "cache", alpha=0.0, augment_copies=2,
                     transfer_text=str(transfer), training={"num_layers": 1, "epochs": 1})
    result = distill(_data(small_banking77), config, tmp_path / "student")

    assert (result.transfer_rows, result.augmented_rows) == (0, 0)
    manifest = json.loads((tmp_path / "student" / "edgetune.json").read_text())
    assert manifest["training"]["steps"] == (88 + 7) // 8, "only the labelled rows are trained on"
    assert manifest["distillation"]["transfer_text"]["rows"] == 0
    assert manifest["distillation"]["augmentation"]["rows"] == 0


def test_augmentation_perturbs_words_deterministically_and_never_repeats_a_text():
    texts = [row["text"] for row in banking77_subset("train", 10, 10, seed=5)]
    copies = augmented_texts(texts, 3, 0.2, seed=7)

    assert copies == augmented_texts(texts, 3, 0.2, seed=7), "same seed, same copies (the logits cache relies on it)"
    assert copies != augmented_texts(texts, 3, 0.2, seed=8)
    assert len(set(copies)) == len(copies) and not set(copies) & set(texts)
    assert 2 * len(texts) < len(copies) <= 3 * len(texts)
    vocabulary = {word for text in texts for word in text.split()}
    assert all(set(copy.split()) <= vocabulary for copy in copies), "words come from the corpus, tokenizer-free"
    assert augmented_texts(texts, 0, 0.2, seed=7) == []
    assert augmented_texts(["two words"], 5, 0.2, seed=7) == [], "too short to perturb"


def test_a_layer_subset_keeps_the_requested_layers_with_their_weights(tmp_path, tiny_bert_dir):
    from transformers import BertConfig, BertForSequenceClassification

    source = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=6,
                                                      num_attention_heads=2, intermediate_size=32))
    original = {name: tensor.clone() for name, tensor in source.state_dict().items()}
    assert evenly_spaced_layers(6, 3) == [0, 2, 4] and evenly_spaced_layers(12, 6) == [0, 2, 4, 6, 8, 10]

    assert keep_layers(source, (1, 4, 5), None) == [1, 4, 5]
    source.save_pretrained(tmp_path / "cut")
    cut = BertForSequenceClassification.from_pretrained(tmp_path / "cut")
    assert cut.config.num_hidden_layers == 3
    for new_index, old_index in enumerate([1, 4, 5]):
        for name, tensor in cut.bert.encoder.layer[new_index].state_dict().items():
            torch.testing.assert_close(tensor, original[f"bert.encoder.layer.{old_index}.{name}"], msg=name)
    torch.testing.assert_close(cut.bert.embeddings.word_embeddings.weight,
                               original["bert.embeddings.word_embeddings.weight"])
    with pytest.raises(ConfigError, match="layers: 3 does not exist; the model has 3 layers"):
        keep_layers(cut, (0, 3), None)
    with pytest.raises(ConfigError, match="layers and num_layers both given"):
        FinetuneConfig(layers=(0,), num_layers=1)

    # Plain fine-tuning takes the same option, so a shallow student can also be trained alone.
    outcome = CliRunner().invoke(cli, ["finetune", "--train", str(_small_train(tmp_path)), "--model",
                                       str(tiny_bert_dir), "--layers", "1", "--epochs", "1", "--batch-size", "8",
                                       "-o", str(tmp_path / "alone")])
    assert outcome.exit_code == 0, outcome.output
    manifest = json.loads((tmp_path / "alone" / "edgetune.json").read_text())
    assert manifest["stage"] == "finetune" and manifest["training"]["layers_kept"] == [1]
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "alone").config.num_hidden_layers == 1


def _small_train(tmp_path: Path) -> Path:
    from conftest import write_csv

    return write_csv(tmp_path / "train.csv", banking77_subset("train", 3, 12))


def test_the_loss_mixes_soft_targets_and_hard_labels():
    teacher = torch.tensor([[4.0, 1.0, -2.0], [0.0, 3.0, 0.5]])
    labels = torch.tensor([2, -100])  # the second row is transfer text: no hard label
    same = distillation_loss(teacher.clone(), teacher, labels, temperature=2.0, alpha=1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6), "a student equal to its teacher has no soft loss"
    student = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    hard_only = distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.0)
    assert hard_only.item() == pytest.approx(torch.nn.functional.cross_entropy(student[:1], labels[:1]).item())
    soft = torch.nn.functional.kl_div(torch.log_softmax(student / 2, -1), torch.softmax(teacher / 2, -1),
                                      reduction="batchmean") * 4
    mixed = distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.25)
    assert mixed.item() == pytest.approx(0.25 * soft.item() + 0.75 * hard_only.item(), rel=1e-5)


def test_soft_targets_pull_the_student_toward_the_teacher(tmp_path, small_banking77, tiny_teacher_dir, tiny_bert_dir):
    # A teacher that disagrees with every label (its head shifted by one class) tells soft targets from
    # hard ones: only a student that learns from the teacher can end up close to it.
    shifted = tmp_path / "shifted-teacher"
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    with torch.no_grad():
        head = teacher.classifier.out_proj
        head.weight.copy_(head.weight.roll(1, dims=0))
        head.bias.copy_(head.bias.roll(1, dims=0))
    teacher.save_pretrained(shifted)
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(shifted)
    data = load_labelled_data(_data(small_banking77))
    teacher_probabilities = torch.softmax(_logits(shifted, data.train.texts), -1)

    def distance_to_teacher(model_dir: Path) -> float:
        student_log_probabilities = torch.log_softmax(_logits(model_dir, data.train.texts), -1)
        return torch.nn.functional.kl_div(student_log_probabilities, teacher_probabilities,
                                          reduction="batchmean").item()

    transformers.set_seed(42)  # as training does before it gives the student a new 4-class head
    AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=4, ignore_mismatched_sizes=True
                                                       ).save_pretrained(tmp_path / "untrained")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp_path / "untrained")

    def distilled(alpha: float) -> Path:
        # One evaluation, at the end: selecting by validation accuracy would keep the least-trained
        # checkpoint of a student taught wrong labels.
        training = {"epochs": 6, "learning_rate": 5e-3, "eval_steps": 66}
        distill(_data(small_banking77), _config(shifted, tiny_bert_dir, tmp_path / "cache", alpha=alpha,
                                                temperature=1.0, training=training), tmp_path / f"alpha{alpha}")
        return tmp_path / f"alpha{alpha}"

    # Same student, seed and steps; only the targets differ.
    untrained = distance_to_teacher(tmp_path / "untrained")
    soft, hard = distance_to_teacher(distilled(1.0)), distance_to_teacher(distilled(0.0))
    assert soft < 0.8 * untrained and soft < 0.6 * hard, (soft, untrained, hard)


class SimulatedCrash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 10:
            raise SimulatedCrash("killed after step 10")


def test_resume_with_a_representation_loss_ends_where_an_uninterrupted_run_ends(
        tmp_path, small_banking77, tiny_teacher_dir, tiny_bert_dir):
    config = _config(tiny_teacher_dir, tiny_bert_dir, tmp_path / "cache", hidden_weight=1.0,
                     training={"epochs": 3, "eval_steps": 5})
    distill(_data(small_banking77), config, tmp_path / "straight")
    with pytest.raises(SimulatedCrash):
        distill(_data(small_banking77), config, tmp_path / "crashed", extra_callbacks=[CrashAfterSave()])
    assert (work_directory_for(tmp_path / "crashed") / "checkpoints" / "checkpoint-10").is_dir()
    with pytest.raises(ConfigError, match=r"distill\.alpha differs"):
        distill(_data(small_banking77), _config(tiny_teacher_dir, tiny_bert_dir, tmp_path / "cache", alpha=0.3,
                                                hidden_weight=1.0, training={"epochs": 3, "eval_steps": 5}),
                tmp_path / "crashed", resume=True)
    distill(_data(small_banking77), config, tmp_path / "crashed", resume=True)

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "crashed" / "model.safetensors")
    assert not [name for name in straight if "distill_projection" in name], "the projection is training-only"
    assert straight.keys() == resumed.keys()
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_user_mistakes_are_refused_before_training(tmp_path, small_banking77, tiny_bert_dir, tiny_teacher_dir):
    other_labels = tmp_path / "other-labels"
    other_labels.mkdir()
    for path in tiny_teacher_dir.iterdir():
        (other_labels / path.name).write_bytes(path.read_bytes())
    config = json.loads((other_labels / "config.json").read_text())
    config["id2label"]["0"] = "card_swallowed"
    (other_labels / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="the data's label '.+' is not among the teacher's .* same labels"):
        distill(_data(small_banking77), _config(other_labels, tiny_bert_dir, tmp_path), tmp_path / "a")
    with pytest.raises(ConfigError, match="config.json has no id2label; the teacher must be a fine-tuned classifier"):
        distill(_data(small_banking77), _config(tiny_bert_dir, tiny_bert_dir, tmp_path), tmp_path / "a")
    with pytest.raises(ConfigError, match="temperature: 0.0 must be greater than zero"):
        _config(tiny_teacher_dir, tiny_bert_dir, tmp_path, temperature=0.0)
    with pytest.raises(ConfigError, match=r"alpha: 1.5 must be in \[0, 1\]"):
        _config(tiny_teacher_dir, tiny_bert_dir, tmp_path, alpha=1.5)
    with pytest.raises(ConfigError, match=r"augment_probability: 0.7 must be in \(0, 0.5\)"):
        _config(tiny_teacher_dir, tiny_bert_dir, tmp_path, augment_copies=1, augment_probability=0.7)
    with pytest.raises(ConfigError, match="augment_copies: -1 must not be negative"):
        _config(tiny_teacher_dir, tiny_bert_dir, tmp_path, augment_copies=-1)
    with pytest.raises(DataError, match="transfer text .*missing.txt: file not found"):
        distill(_data(small_banking77), _config(tiny_teacher_dir, tiny_bert_dir, tmp_path,
                                                transfer_text=str(tmp_path / "missing.txt")), tmp_path / "b")
    with pytest.raises(EdgetuneError, match="already exists"):
        (tmp_path / "taken").mkdir()
        distill(_data(small_banking77), _config(tiny_teacher_dir, tiny_bert_dir, tmp_path), tmp_path / "taken")

    outcome = CliRunner().invoke(cli, ["distill", "--train", str(small_banking77["train"]), "--teacher",
                                       str(tmp_path / "no-teacher"), "--student", str(tiny_bert_dir),
                                       "-o", str(tmp_path / "c")])
    assert outcome.exit_code == 2
    assert outcome.output.strip().splitlines() == [
        f"error: teacher: {tmp_path / 'no-teacher'} does not exist; pass the output directory of `edgetune finetune`"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_accelerate_launch_distils_with_two_cpu_processes(tmp_path, small_banking77, tiny_teacher_dir, tiny_bert_dir):
    # As for finetune: without a GPU the two processes meet over gloo; the projection of the
    # representation loss trains outside the model's forward pass and must still synchronise.
    output = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "edgetune", "distill", "--teacher", str(tiny_teacher_dir), "--student", str(tiny_bert_dir),
         "--train", str(small_banking77["train"]), "--test", str(small_banking77["test"]), "-o", str(output),
         "--epochs", "2", "--batch-size", "8", "--hidden-weight", "0.5", "--teacher-cache-dir", str(tmp_path / "c")],
        capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((output / "edgetune.json").read_text())
    assert manifest["stage"] == "distill" and manifest["training"]["processes"] == 2
    assert manifest["training"]["steps"] == 12  # 88 rows, batch 8 per process, 2 processes, 2 epochs
