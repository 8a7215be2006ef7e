"""The runtime's predictions: batching, session options, many threads at once, and whole files streamed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import tracemalloc

import numpy
import pytest

from conftest import banking77_subset, read_banking77, write_csv
from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.errors import InputError
from edgetune_runtime.file_predict import predict_file

# The first four Banking77 intents (sorted), as in the tiny model's training data, plus others.
TEXTS = [row["text"] for row in banking77_subset("test", 6, 6, seed=3)]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir):
    output = tmp_path_factory.mktemp("predict_bundles") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(golden_examples=4))
    return output


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return Bundle.load(bundle_dir, intra_op_threads=2)


def test_batches_with_dynamic_padding_match_one_text_at_a_time(bundle):
    # One text goes through the pure-Python WordPiece (token types None: all zero), a batch through tokenizers.
    assert [bundle.token_ids(text) for text in TEXTS] == [(bundle.tokenizer.encode(text).ids, None) for text in TEXTS]
    assert bundle.token_ids("café")[1] is not None, "not ASCII: the Rust tokenizer"
    one_by_one = numpy.stack([bundle.predict_proba([text])[0] for text in TEXTS])
    for batch_size in (1, 3, 32):
        batched = bundle.predict_proba(TEXTS, batch_size=batch_size)
        # fp32: padding is masked out, so only float rounding may differ; order is the input order.
        numpy.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    encoded = bundle.encode(TEXTS[:3])
    lengths = [len(bundle.tokenizer.encode(text).ids) for text in TEXTS[:3]]
    assert encoded["input_ids"].shape == (3, max(lengths)) and encoded["input_ids"].dtype == numpy.int64
    assert encoded["attention_mask"].sum(axis=1).tolist() == lengths


def test_top_k_is_sorted_and_bounded(bundle):
    top = bundle.predict(["I lost my card", ""], top_k=3)
    assert [len(row) for row in top] == [3, 3]
    assert top[0][0].probability >= top[0][1].probability >= top[0][2].probability
    assert bundle.predict(["I lost my card"])[0][0] == top[0][0]
    best = bundle.predict(["I lost my card"])[0][0]  # the batch-1 fast path: plain Python values
    assert type(best.label) is str and type(best.probability) is float
    assert bundle.predict([]) == []
    with pytest.raises(ValueError, match="top_k must be between 1 and"):
        bundle.predict(["x"], top_k=len(bundle.labels) + 1)
    with pytest.raises(TypeError, match="not a single string"):
        bundle.predict("I lost my card")


def test_session_options_reach_onnx_runtime(bundle_dir):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_mem_pattern = False
    loaded = Bundle.load(bundle_dir, intra_op_threads=1, inter_op_threads=1, session_options=options,
                         providers=["CPUExecutionProvider"])
    settings = loaded.session.get_session_options()
    assert settings.intra_op_num_threads == 1 and settings.inter_op_num_threads == 1
    assert settings.enable_mem_pattern is False
    with pytest.raises(InputError, match="execution provider 'NoSuchExecutionProvider' is not available"):
        Bundle.load(bundle_dir, providers=["NoSuchExecutionProvider"])


def test_eight_threads_at_once_give_exactly_the_sequential_outputs(bundle):
    batches = [TEXTS[start:start + size] for start in range(0, len(TEXTS), 5) for size in (1, 4)]
    sequential = [bundle.predict_proba(batch) for batch in batches]
    start_together = threading.Barrier(8)
    differences, errors = [], []

    def worker(index: int) -> None:
        try:
            start_together.wait()
            # Each thread walks the batches from a different place, so different inputs overlap in time.
            for _ in range(3):
                for position in range(len(batches)):
                    which = (position + index) % len(batches)
                    if not numpy.array_equal(bundle.predict_proba(batches[which]), sequential[which]):
                        differences.append((index, which))
        except BaseException as error:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not differences


def _expected_lines(bundle, texts, top_k=1):
    return [[{"label": p.label, "probability": round(p.probability, 6)} for p in row]
            for row in bundle.predict(texts, top_k=top_k)]


def test_csv_and_jsonl_files_predict_like_the_api(bundle, tmp_path):
    rows = banking77_subset("test", 4, 5)
    csv_path = write_csv(tmp_path / "texts.csv", [{"id": i, "utterance": r["text"]} for i, r in enumerate(rows)],
                         fieldnames=("id", "utterance"))
    jsonl_path = tmp_path / "texts.jsonl"
    jsonl_path.write_text("".join(json.dumps({"body": r["text"]}) + "\n" for r in rows) + "\n", encoding="utf-8")
    expected = _expected_lines(bundle, [r["text"] for r in rows], top_k=2)

    output = tmp_path / "out" / "predictions.jsonl"
    result = predict_file(bundle, csv_path, output, top_k=2, batch_size=3)
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert result.rows == len(rows) and [line["row"] for line in lines] == list(range(1, len(rows) + 1))
    assert [line["predictions"] for line in lines] == expected
    assert [p.name for p in output.parent.iterdir()] == ["predictions.jsonl"]  # no temporary left behind

    stream = io.StringIO()
    predict_file(bundle, jsonl_path, text_column="body", top_k=2, stream=stream)
    assert [json.loads(line)["predictions"] for line in stream.getvalue().splitlines()] == expected


def test_a_bad_row_names_the_file_and_row_and_leaves_no_output(bundle, tmp_path):
    good = [json.dumps({"text": text}) for text in TEXTS] * 50  # 1,800 rows: several chunks
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(good + ["{not json"]) + "\n", encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    with pytest.raises(InputError, match=rf"texts.jsonl, line {len(good) + 1}: not valid JSON"):
        predict_file(bundle, path, output, batch_size=16)
    assert list(tmp_path.iterdir()) == [path]

    # To a stream, finished chunks were already written when the bad line was reached: it streams.
    stream = io.StringIO()
    with pytest.raises(InputError):
        predict_file(bundle, path, batch_size=16, stream=stream)
    assert len(stream.getvalue().splitlines()) >= len(good) - 16 * 8


def test_file_memory_does_not_grow_with_the_number_of_rows(bundle, tmp_path):
    texts = [row["text"] for row in read_banking77("test")[:500]]

    def peak_bytes(copies: int) -> int:
        path = tmp_path / f"texts{copies}.csv"
        write_csv(path, [{"text": text} for text in texts * copies], fieldnames=("text",))
        tracemalloc.start()
        predict_file(bundle, path, tmp_path / f"out{copies}.jsonl", batch_size=32)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak_bytes(1), peak_bytes(8)  # 500 rows against 4,000 rows
    assert large < small * 1.5, (small, large)


@pytest.mark.parametrize(("content", "message"), [
    ("text,category\n\"unclosed,x\n", "fields where the header has 2|check the quoting"),
    ("words\nhello\n", "cannot tell which column holds the text; columns are words - pass --text-column"),
    ("text\nhello\n\xff\n", None),
])
def test_unreadable_files_fail_in_one_line(bundle, tmp_path, content, message):
    path = tmp_path / "texts.csv"
    if message is None:
        path.write_bytes(b"text\nhello\n\xff\n")
        message = r"texts.csv, line 3: bytes b'\\xff' are not valid UTF-8"
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        predict_file(bundle, path, stream=io.StringIO())


def _runtime_cli(*arguments: str):
    code = ("import sys; sys.modules['torch'] = sys.modules['transformers'] = None; "
            "from edgetune_runtime.cli import main; sys.argv = ['edgetune-runtime', *sys.argv[1:]]; main()")
    return subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True)


def test_cli_predicts_a_file_and_refuses_bad_input_in_one_line(bundle, bundle_dir, tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS[:4]) + "\n", encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    done = _runtime_cli("predict", str(bundle_dir), "--input", str(path), "--output", str(output), "--threads", "1")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["predictions"] for line in lines] == _expected_lines(bundle, TEXTS[:4])

    both = _runtime_cli("predict", str(bundle_dir), "hello", "--input", str(path))
    assert both.returncode == 2 and both.stderr.startswith("error: give either TEXT arguments or --input FILE")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n', encoding="utf-8")
    refused = _runtime_cli("predict", str(bundle_dir), "--input", str(bad))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {bad}, line 2, column 'text': expected a text, found int"]


def test_single_text_features_are_the_encodings_values_without_fresh_allocations():

    import numpy

    from edgetune_runtime.features import FeatureBuilder

    builder = FeatureBuilder(["input_ids", "attention_mask", "token_type_ids"], pad_id=0, where="test", max_length=4)
    feeds = builder.single([101, 7, 8, 102], [0, 0, 1, 1])  # types not known to be zero: taken as given
    assert feeds["token_type_ids"].tolist() == [[0, 0, 1, 1]] and feeds["attention_mask"].tolist() == [[1, 1, 1, 1]]
    assert builder.single([101, 7, 102])["token_type_ids"].tolist() == [[0, 0, 0]], "None: all zero"
    builder = FeatureBuilder(["input_ids", "attention_mask", "token_type_ids"], pad_id=0, where="test", max_length=4,
                             single_text_types_are_zero=True)
    short = builder.single([101, 102], [0, 0])
    assert short["input_ids"].dtype == numpy.int64 and short["input_ids"].tolist() == [[101, 102]]
    assert short["token_type_ids"].tolist() == [[0, 0]] and not short["attention_mask"].flags.writeable
    longer = builder.single([1, 2, 3, 4, 5, 6], [0] * 6)  # past the shared rows
    assert longer["attention_mask"].shape == (1, 6) and longer["token_type_ids"].shape == (1, 6)
