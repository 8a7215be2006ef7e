"""Chat data: prompt/response pairs and `messages` conversations, validated as they stream, with a seeded carve.

Real Bitext support rows where the behaviour is about real data; small hand-written files for each mistake.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas
import pytest

from conftest import SHARED_DATA
from edgetune.data.chat import ChatExample, check_lengths, load_chat_data
from edgetune.data.chat_config import ChatDataConfig
from edgetune.errors import ConfigError, DataError

BITEXT = SHARED_DATA / "bitext_support" / "customer_support.csv"
needs_bitext = pytest.mark.skipif(not BITEXT.is_file(), reason="shared Bitext data not present")


def _bitext_rows(tmp_path: Path, every: int = 15, name: str = "bitext.csv") -> Path:
    """Every `every`-th row of the real file (it is sorted by intent, so this spans all 27 intents)."""
    frame = pandas.read_csv(BITEXT, dtype=str, keep_default_na=False).iloc[::every]
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _load(train: Path, **kwargs) -> object:
    values = {key: (str(value) if isinstance(value, Path) else value) for key, value in kwargs.items()}
    return load_chat_data(ChatDataConfig(train=str(train), **values))


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _conversation(question: str, answer: str = "Here is how.") -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


@needs_bitext
def test_bitext_columns_detected_and_carve_stratified_by_intent(tmp_path):
    path = _bitext_rows(tmp_path)
    data = _load(path)
    everything = data.train.examples + data.validation.examples
    assert len(everything) == len(pandas.read_csv(path))
    example = data.train.examples[0]
    assert [message["role"] for message in example.messages] == ["user", "assistant"]
    assert example.messages[1]["content"].startswith("I understand") or "{{" in example.response
    intents = {example.intent for example in everything}
    assert len(intents) == 27
    assert {example.intent for example in data.train.examples} == intents
    assert {example.intent for example in data.validation.examples} == intents
    assert data.test is None
    assert "stratified by intent" in data.notes[0]

    again = _load(path)
    other_seed = _load(path, split_seed=7)
    rows = [example.row for example in data.validation.examples]
    assert rows == [example.row for example in again.validation.examples]
    assert rows != [example.row for example in other_seed.validation.examples]
    assert data.fingerprint() == again.fingerprint() != other_seed.fingerprint()


@needs_bitext
def test_system_prompt_is_prepended_as_a_system_turn(tmp_path):
    data = _load(_bitext_rows(tmp_path, every=60), system_prompt="You are a support agent.")
    for example in data.train.examples + data.validation.examples:
        assert example.messages[0] == {"role": "system", "content": "You are a support agent."}
        assert example.messages[-1]["role"] == "assistant"
        assert "support agent" not in example.prompt  # duplicate and leakage checks compare the user's words


@needs_bitext
def test_test_split_sharing_a_training_prompt_is_refused_naming_both_rows(tmp_path):
    train = _bitext_rows(tmp_path, every=40, name="train.csv")
    frame = pandas.read_csv(BITEXT, dtype=str, keep_default_na=False).iloc[1::40].iloc[:20].copy()
    trained = pandas.read_csv(train, dtype=str, keep_default_na=False)
    frame.iloc[5] = trained.iloc[3]
    test = tmp_path / "test.csv"
    frame.to_csv(test, index=False)
    with pytest.raises(DataError) as error:
        _load(train, test=test)
    message = str(error.value)
    assert message.startswith(f"{test}, row 6, column 'instruction': the prompt is also train row 4 ({train})")
    assert "\n" not in message

    frame.iloc[5] = pandas.read_csv(BITEXT, dtype=str, keep_default_na=False).iloc[2]
    frame.to_csv(test, index=False)
    data = _load(train, test=test)
    assert len(data.test) == 20 and data.test.name == "test"
    assert len(data.train) + len(data.validation) == len(trained)  # test never joins selection


def test_named_columns_and_every_format(tmp_path):
    rows = [{"q": f"How do I do thing {i}?", "a": f"Do step {i}.", "topic": "ab"[i % 2]} for i in range(20)]
    frame = pandas.DataFrame(rows)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    loaded = [_load(tmp_path / f"d.{suffix}", prompt_column="q", response_column="a", intent_column="topic")
              for suffix in ("csv", "tsv", "jsonl", "parquet")]
    assert len({data.fingerprint() for data in loaded}) == 1
    assert {example.intent for example in loaded[0].validation.examples} == {"a", "b"}
    with pytest.raises(DataError, match=r"d\.csv: no column 'prompt_text' for the prompt"):
        _load(tmp_path / "d.csv", prompt_column="prompt_text", response_column="a")


@pytest.mark.parametrize("columns", [("prompt", "completion"), ("question", "answer"), ("input", "output")])
def test_other_prompt_response_pairs_detected(tmp_path, columns):
    prompt, response = columns
    path = tmp_path / "d.csv"
    pandas.DataFrame([{prompt: f"p{i}", response: f"r{i}"} for i in range(10)]).to_csv(path, index=False)
    data = _load(path)
    example = (data.train.examples + data.validation.examples)[0]
    assert example.prompt.startswith("p") and example.response.startswith("r")


def test_undetectable_columns_refused(tmp_path):
    path = tmp_path / "d.csv"
    pandas.DataFrame([{"text": "x", "label": "y"}]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"cannot tell which columns hold the prompt and the response; columns are "
                                        r"text, label - set prompt_column and response_column"):
        _load(path)


def test_messages_jsonl_conversations(tmp_path):
    rows = [_conversation(f"question {i}", f"answer {i}") for i in range(10)]
    rows[0]["messages"] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                           {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more?"},
                           {"role": "assistant", "content": "sure"}]
    data = _load(_write_jsonl(tmp_path / "c.jsonl", rows), system_prompt="Default system.")
    examples = {example.row: example for example in data.train.examples + data.validation.examples}
    assert [m["role"] for m in examples[1].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert examples[1].messages[0]["content"] == "Be brief."  # the row's own system turn is kept
    assert examples[1].prompt == "hi\nhello\nmore?" and examples[1].response == "sure"
    assert examples[2].messages[0] == {"role": "system", "content": "Default system."}


BAD_CONVERSATIONS = [
    ({"messages": "user: hi"}, r"row 2, column 'messages': expected a list of \{role, content\} objects, found str"),
    ({"messages": []}, r"row 2, column 'messages': expected a list .* found an empty list"),
    ({"messages": [{"role": "user", "content": "hi"}]},
     r"row 2, column 'messages': the conversation has no assistant turn"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]},
     r"row 2, column 'messages', message 2: unknown role 'bot'; use one of system, user, assistant"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                   {"role": "user", "content": "and?"}]},
     r"row 2, column 'messages': the conversation ends with a user turn after the last assistant answer"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " \u200b "}]},
     r"row 2, column 'messages', message 2: the assistant content is empty"),
    ({"messages": [{"role": "assistant", "content": "hello"}]}, r"the first assistant turn answers no user turn"),
    ({"messages": ["hi"]}, r"message 1: expected an object with 'role' and 'content'"),
]


@pytest.mark.parametrize(("bad", "expected"), BAD_CONVERSATIONS)
def test_bad_conversations_refused_naming_file_row_and_column(tmp_path, bad, expected):
    path = _write_jsonl(tmp_path / "c.jsonl", [_conversation("fine question"), bad, _conversation("later")])
    with pytest.raises(DataError, match=expected) as error:
        _load(path)
    assert str(error.value).startswith(f"{path}, row 2, column 'messages'")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("prompt", "response", "column", "detail"), [
    ("How do I pay?", "", "response", "the response is empty; fill it in"),
    ("How do I pay?", "   \t ", "response", "the response is empty; fill it in"),
    ("How do I pay?", "\u200b\ufeff", "response", "the response is empty (only invisible characters: U+200B U+FEFF)"),
    ("  ", "Pay here.", "instruction", "the prompt is empty"),
])
def test_empty_prompts_and_responses_refused(tmp_path, prompt, response, column, detail):
    path = tmp_path / "d.csv"
    rows = [{"instruction": "first", "response": "ok"}, {"instruction": prompt, "response": response}]
    pandas.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        _load(path)
    assert str(error.value).startswith(f"{path}, row 2, column {column!r}: {detail}")


def test_duplicate_prompts_refused_unless_allowed(tmp_path):
    path = tmp_path / "d.csv"
    rows = [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(12)]
    rows[9]["instruction"] = "question 3\u200b"  # the same to a reader
    pandas.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        _load(path)
    assert str(error.value).startswith(f"{path}, row 10, column 'instruction': the same prompt as row 4; remove "
                                       "one of the two, or set allow_duplicate_prompts")
    data = _load(path, allow_duplicate_prompts=True)
    assert len(data.train) + len(data.validation) == 12
    assert any("kept 1 rows whose prompt repeats" in note for note in data.notes)


def test_validation_sharing_a_training_prompt_is_refused(tmp_path):
    train = _write_jsonl(tmp_path / "train.jsonl", [_conversation(f"q{i}") for i in range(5)])
    validation = _write_jsonl(tmp_path / "validation.jsonl", [_conversation("other"), _conversation("q2")])
    with pytest.raises(DataError, match=r"validation\.jsonl, row 2, column 'messages': the prompt is also train "
                                        r"row 3"):
        _load(train, validation=validation)


def test_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="validation_fraction"):
        ChatDataConfig(train="x.csv", validation_fraction=0.7)
    with pytest.raises(ConfigError, match="system_prompt: is empty"):
        ChatDataConfig(train="x.csv", system_prompt="  ")


def _examples(count: int) -> list[ChatExample]:
    return [ChatExample(({"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}),
                        "d.csv", i + 1) for i in range(count)]


def test_check_lengths_refuses_truncates_or_drops_by_option():
    examples, counts = _examples(4), [100, 400, 250, 330]
    with pytest.raises(DataError) as error:
        check_lengths(examples, counts, 320, "refuse")
    assert str(error.value) == ("d.csv, row 2: 400 tokens after the chat template, over max_length 320 (2 of 4 "
                                "examples are); raise max_length, or set on_overflow to truncate or drop")
    truncated = check_lengths(examples, counts, 320, "truncate")
    assert (truncated.over, truncated.truncated, truncated.dropped) == (2, 2, 0)
    assert truncated.token_counts == [100, 320, 250, 320] and len(truncated.examples) == 4
    dropped = check_lengths(examples, counts, 320, "drop")
    assert [example.row for example in dropped.examples] == [1, 3] and dropped.token_counts == [100, 250]
    assert (dropped.over, dropped.dropped) == (2, 2)
    fine = check_lengths(examples, counts, 400, "refuse")
    assert fine.over == 0 and fine.token_counts == counts
    with pytest.raises(DataError, match=r"row 4: the prompt alone is 330 tokens"):
        check_lengths(examples, counts, 320, "truncate", prompt_token_counts=[50, 60, 70, 330])
    with pytest.raises(DataError, match="on_overflow: 'cut' is not one of"):
        check_lengths(examples, counts, 320, "cut")


def test_carve_keeps_rows_sharing_a_prompt_on_one_side(tmp_path):
    rows = [{"instruction": f"question {i % 15}", "response": f"answer {i}"} for i in range(45)]
    path = tmp_path / "d.csv"
    pandas.DataFrame(rows).to_csv(path, index=False)
    for seed in range(5):
        data = _load(path, allow_duplicate_prompts=True, validation_fraction=0.2, split_seed=seed)
        held = {example.prompt for example in data.validation.examples}
        assert held and not held & {example.prompt for example in data.train.examples}
        assert len(data.validation) == 3 * len(held)


def test_messages_from_parquet_and_a_missing_prompt_cell(tmp_path):
    rows = [_conversation(f"question {i}", f"answer {i}") for i in range(10)]
    pandas.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    data = _load(tmp_path / "c.parquet")
    assert sorted(example.prompt for example in data.train.examples + data.validation.examples) == sorted(
        f"question {i}" for i in range(10))
    pandas.DataFrame([{"prompt": "p", "completion": "c"}, {"prompt": None, "completion": "c"}]).to_parquet(
        tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p\.parquet, row 2, column 'prompt': expected the prompt as text, found "
                                        r"nothing"):
        _load(tmp_path / "p.parquet")


@needs_bitext
def test_full_bitext_holds_prompts_repeated_up_to_spacing(tmp_path):
    # 'cancel order 732201349959' (row 118) and 'cancel order  732201349959' (row 137): one prompt to a reader.
    with pytest.raises(DataError) as error:
        _load(BITEXT)
    assert str(error.value).startswith(f"{BITEXT}, row 137, column 'instruction': the same prompt as row 118")
    data = _load(BITEXT, allow_duplicate_prompts=True)
    assert len(data.train) + len(data.validation) == 4514
    assert any("kept 6 rows" in note for note in data.notes)
