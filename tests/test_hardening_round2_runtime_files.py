"""Hardening, second round, runtime: long texts, awkward files and full disks through the device commands.

- Texts are cut by characters before the tokenizer (`text_clip.py`), with a bound that cannot change
  the kept tokens: checked against the tokenizer run on the whole text, on texts built to defeat a
  fixed bound (whitespace and zero-width floods, giant words); the hard cap holds whatever the text.
- `predict --input` and `bench --data` read CR-only files, stream lines, and refuse a line too long
  to hold (naming it) instead of aborting in the tokenizer.
- A real file-size limit (RLIMIT_FSIZE, as a full disk) while writing `predict -o` or `bench -o` is one
  `error:` line with exit status 2, and no temporary file is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetune.bundle.build import build_bundle
from edgetune.bundle.config import BundleConfig
from edgetune_runtime.bundle import Bundle
from edgetune_runtime.cli import main as runtime_cli
from edgetune_runtime.texts_file import read_texts

MAX_LINE_BYTES = 1 << 24  # texts_file.MAX_LINE_BYTES, written out so that this file imports on older code too
MAX_CLIPPED_CHARACTERS = 1 << 22  # text_clip.MAX_CLIPPED_CHARACTERS


def test_the_bounds_written_out_here_are_the_runtimes():
    from edgetune_runtime import text_clip, texts_file

    assert (texts_file.MAX_LINE_BYTES, text_clip.MAX_CLIPPED_CHARACTERS) == (MAX_LINE_BYTES, MAX_CLIPPED_CHARACTERS)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_export_dir) -> Path:
    output = tmp_path_factory.mktemp("round2_runtime_files") / "tiny"
    build_bundle(tiny_export_dir, output, BundleConfig(zip=False, ort_format=False, golden_examples=4))
    return output


@pytest.fixture(scope="module")
def bundle(bundle_dir) -> Bundle:
    return Bundle.load(bundle_dir)


WORDS = "I lost my card at the station, J’ai perdu ma carte à la gare; top-up failed 42 times!".split()


def _words(count: int, offset: int = 0) -> str:
    return " ".join(WORDS[(index + offset) % len(WORDS)] for index in range(count))


# Texts longer than the clipping bound, several built so that a fixed character cut would change tokens.
LONG_TEXTS = {
    "plain-words": lambda bound: _words(bound),
    "ascii-only": lambda bound: ("lost card " * bound),
    "whitespace-flood-after-a-few-words": lambda bound: _words(5) + " " * (3 * bound) + _words(400),
    "zero-width-flood": lambda bound: _words(3) + "\u200b" * (3 * bound) + " " + _words(400),
    "control-character-flood": lambda bound: "card" + "\x07" * (2 * bound) + " lost " + _words(400),
    "combining-marks": lambda bound: " ".join(["e\u0301" * 30] * bound),
    "one-giant-word-then-words": lambda bound: "x" * (2 * bound) + " " + _words(400),
    "giant-word-crossing-the-bound": lambda bound: _words(20) + " " + "y" * (5 * bound),
    "cjk-no-spaces": lambda bound: "我的卡丢了" * bound,
    "newlines-and-tabs": lambda bound: "\n\t".join(WORDS) * bound,
}


@pytest.mark.parametrize("case", list(LONG_TEXTS))
def test_cutting_before_the_tokenizer_keeps_exactly_the_truncated_tokens(bundle, case):
    text = LONG_TEXTS[case](bundle._clip.bound)
    assert len(text) > bundle._clip.bound
    truth = bundle.tokenizer.encode(text)  # the whole text through the tokenizer, truncated after
    ids, _ = bundle.token_ids(text)
    assert ids == truth.ids
    features = bundle.encode([text, "short"])
    assert features["input_ids"][0].tolist()[:len(truth.ids)] == truth.ids
    # predictions on the long text equal those on the same text cut to the bound where the cut is exact
    expected = bundle.predict_proba([text, "short"])
    assert (bundle.predict_proba([bundle._clip(text), "short"]) == expected).all()
    assert (bundle.predict_proba([text]) == bundle.predict_proba([bundle._clip(text)])).all()


def test_a_text_is_never_handed_whole_to_the_tokenizer_past_the_hard_cap(bundle):
    flood = "card " + " " * (MAX_CLIPPED_CHARACTERS * 2)
    assert len(bundle._clip(flood)) <= MAX_CLIPPED_CHARACTERS
    assert bundle.predict([flood])[0][0].label in bundle.labels


def _invoke(*arguments: str):
    result = CliRunner().invoke(runtime_cli, list(arguments))
    return result, [line for line in result.stderr.splitlines() if line.strip()]


def test_a_line_too_long_to_hold_is_an_input_error_naming_it(bundle_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    with open(texts, "w") as handle:
        handle.write("I lost my card\n")
        handle.write("lost " * (MAX_LINE_BYTES // 5 + 10))  # one line past the bound, no line break
    result, lines = _invoke("predict", str(bundle_dir), "--input", str(texts))
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "line 2: longer than 16 MiB" in lines[0], lines
    data = tmp_path / "data.csv"
    data.write_text("text,label\n\"" + "x" * (MAX_LINE_BYTES + 5) + "\",a\n")
    result, lines = _invoke("bench", str(bundle_dir), "--data", str(data), "--cold-starts", "0", "--warmup", "0",
                            "--batch-sizes", "1")
    assert result.exit_code == 2 and len(lines) == 1 and "line 2: longer than 16 MiB" in lines[0], result.stderr


def test_an_over_long_header_line_is_one_error_line(bundle_dir, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("text," + "h" * (MAX_LINE_BYTES + 5) + "\nI lost my card,a\n")
    result, lines = _invoke("predict", str(bundle_dir), "--input", str(data))
    assert result.exit_code == 2 and len(lines) == 1 and "line 1: longer than 16 MiB" in lines[0], result.stderr


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_line_endings_cr_only_included_read_the_same(bundle, bundle_dir, tmp_path, ending):
    rows = [("I lost my card", bundle.labels[0]), ("top up failed", bundle.labels[1]), ("my card", bundle.labels[0])]
    data = tmp_path / "data.csv"
    data.write_bytes(ending.join(["text,label", *(f"{text},{label}" for text, label in rows)]).encode() +
                     ending.encode())
    assert [(row.text, row.label) for row in read_texts(data, need_labels=True)] == rows
    (tmp_path / "texts.txt").write_bytes(ending.join(text for text, _ in rows).encode())
    assert [row.text for row in read_texts(tmp_path / "texts.txt")] == [text for text, _ in rows]
    (tmp_path / "rows.jsonl").write_bytes(ending.join(f'{{"text": "{text}"}}' for text, _ in rows).encode())
    assert [row.text for row in read_texts(tmp_path / "rows.jsonl")] == [text for text, _ in rows]
    output = tmp_path / "out.jsonl"
    result, _ = _invoke("predict", str(bundle_dir), "--input", str(data), "-o", str(output))
    assert result.exit_code == 0, result.stderr
    assert len(output.read_text().splitlines()) == 3
    result, _ = _invoke("bench", str(bundle_dir), "--data", str(data), "--cold-starts", "0", "--warmup", "0",
                        "--batch-sizes", "1", "-o", str(tmp_path / "bench.json"))
    assert result.exit_code == 0, result.stderr


def test_a_cr_only_line_ending_split_across_read_blocks(tmp_path):
    # \r\n whose \r ends one 1 MiB read block and whose \n starts the next is one line ending, not two.
    data = tmp_path / "texts.txt"
    first = "a" * ((1 << 20) - 1)
    data.write_bytes(first.encode() + b"\r\n" + b"second\rthird\r\n")
    assert [row.text for row in read_texts(data)] == [first, "second", "third"]


_LIMITED = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_FSIZE, ({0}, {0}))\n"
            "from edgetune_runtime.cli import main\nsys.argv = ['edgetune-runtime', *sys.argv[1:]]\nmain()\n")


def _limited_run(limit: int, *arguments: str) -> subprocess.CompletedProcess:
    """The device command with a real file-size limit: a write past `limit` bytes fails as on a full disk."""
    return subprocess.run([sys.executable, "-c", _LIMITED.format(limit), *arguments], capture_output=True,
                          text=True, timeout=300, env=os.environ.copy())


def _assert_one_error_and_no_temporary_files(result: subprocess.CompletedProcess, folder: Path, output: Path) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip() and "rows predicted" not in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("error: cannot write or read ") and str(output) in lines[-1], result.stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert not output.exists()
    assert [path.name for path in folder.iterdir() if ".tmp-" in path.name] == []


def test_predict_output_past_a_file_size_limit_is_one_line_and_leaves_no_temporary(bundle_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(_words(12, offset) for offset in range(400)) + "\n")
    output = tmp_path / "out" / "predictions.jsonl"
    output.parent.mkdir()
    result = _limited_run(16384, "predict", str(bundle_dir), "--input", str(texts), "-o", str(output))
    _assert_one_error_and_no_temporary_files(result, output.parent, output)


def test_bench_output_past_a_file_size_limit_is_one_line_and_leaves_no_temporary(bundle, bundle_dir, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"{_words(6, i).replace(',', '')},{bundle.labels[0]}\n" for i in range(8)))
    output = tmp_path / "out" / "bench.json"
    output.parent.mkdir()
    result = _limited_run(512, "bench", str(bundle_dir), "--data", str(data), "--cold-starts", "0", "--warmup", "0",
                          "--batch-sizes", "1", "-o", str(output))
    _assert_one_error_and_no_temporary_files(result, output.parent, output)


def test_a_deeply_nested_jsonl_line_is_one_error_line(bundle_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "I lost my card"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    result, lines = _invoke("predict", str(bundle_dir), "--input", str(rows))
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert "rows.jsonl, line 2: JSON nested 100001 levels deep" in lines[0], lines
