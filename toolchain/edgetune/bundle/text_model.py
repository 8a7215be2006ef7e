"""The bundle's second classifier graph, for apps without a Python tokenizer: raw text in, probabilities out.

onnxruntime-extensions' `BertTokenizer` op runs in front of the bundled graph, so an app in Kotlin,
Swift, C++ or JavaScript feeds one string and reads the labels' probabilities (the bundled graph's
Softmax). The op is built here from tokenizer.json rather than with the extensions' own
`gen_processing_models`: that maps an uncased tokenizer's `strip_accents: null` to "keep accents"
(the Rust tokenizer strips them whenever it lowercases: "café" became [UNK] instead of "cafe"), and
its graph reads two strings as a sentence pair, not as two texts. Checked against the Rust tokenizer
on all 13,083 Banking77 texts: the same ids for every one. It differs on a word the vocabulary cannot
spell (the op keeps the pieces it found and adds [UNK] where the Rust tokenizer makes the whole word
[UNK]: "card💳") and on some non-Latin capitals ("Ωmega" is [UNK] to the op); the golden examples are
checked through the text model when the bundle is built, and a disagreement refuses the bundle.

One text per call: the op tokenises one text (two would be a pair), and an app classifies one message
at a time. Text after a NUL character is not seen by the op (it reads C strings); the Rust tokenizer
drops the NUL and reads on.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.errors import EdgetuneError

TEXT_MODEL_FILE = "model_with_tokenizer.onnx"
TEXT_INPUT = "text"
EXTENSIONS_DOMAIN = "ai.onnx.contrib"
# The token inputs the op produces, by the names exported BERT-family graphs give them.
_TOKENIZER_OUTPUTS = ("input_ids", "token_type_ids", "attention_mask")


def write_text_model(model_path: Path, tokenizer_path: Path, max_length: int, probabilities_output: str | None,
                     destination: Path) -> dict:
    """Write `model_path`'s graph with the tokenizer in front of it to `destination`; return the section entries.

    `probabilities_output` is the bundled graph's Softmax output (`bundle/probabilities.py`), the text
    model's one output. Raises `EdgetuneError` for a tokenizer the op cannot reproduce (not BERT WordPiece).
    """
    import onnx
    from onnx import TensorProto, helper

    if probabilities_output is None:
        raise EdgetuneError(f"{model_path}: the graph has no probabilities output (one float (batch, classes) "
                            "output is needed); the in-graph tokenizer cannot be added, leave "
                            "--tokenizer-in-graph off")
    attributes = tokenizer_op_attributes(tokenizer_path, max_length)
    model = onnx.load(str(model_path))
    graph = model.graph
    inputs = {value.name: value for value in graph.input}
    unknown = sorted(set(inputs) - set(_TOKENIZER_OUTPUTS))
    if unknown:
        raise EdgetuneError(f"{model_path}: graph input {unknown[0]!r} is not one a BERT tokenizer produces "
                            f"({', '.join(_TOKENIZER_OUTPUTS)}); leave --tokenizer-in-graph off")
    produced = [f"tokenizer_{name}" for name in _TOKENIZER_OUTPUTS]
    nodes = [helper.make_node("BertTokenizer", [TEXT_INPUT], produced, name="edgetune_tokenizer",
                              domain=EXTENSIONS_DOMAIN, **attributes)]
    graph.initializer.append(helper.make_tensor("tokenizer_batch_axis", TensorProto.INT64, [1], [0]))
    for name, tokens in zip(_TOKENIZER_OUTPUTS, produced, strict=True):
        if name not in inputs:
            continue
        # The op gives a (tokens,) row; the graph takes (batch, tokens) in the dtype it was exported with.
        elem_type = inputs[name].type.tensor_type.elem_type
        batched = name if elem_type == TensorProto.INT64 else f"tokenizer_{name}_batched"
        nodes.append(helper.make_node("Unsqueeze", [tokens, "tokenizer_batch_axis"], [batched],
                                      name=f"edgetune_batch_{name}"))
        if batched != name:
            nodes.append(helper.make_node("Cast", [batched], [name], to=elem_type, name=f"edgetune_cast_{name}"))
    nodes.extend(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, [1]))
    kept = [output for output in graph.output if output.name == probabilities_output]
    del graph.output[:]
    graph.output.extend(kept)
    model.opset_import.append(helper.make_opsetid(EXTENSIONS_DOMAIN, 1))
    onnx.save(model, str(destination))
    return {"text_model": destination.name, "text_model_input": TEXT_INPUT,
            "text_model_output": probabilities_output}


def tokenizer_op_attributes(tokenizer_path: Path, max_length: int) -> dict:
    """The `BertTokenizer` op's attributes that reproduce `tokenizer_path` (a tokenizers JSON file)."""
    spec = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    model, normalizer = spec.get("model") or {}, spec.get("normalizer") or {}
    pre_tokenizer, post_processor = spec.get("pre_tokenizer") or {}, spec.get("post_processor") or {}
    kinds = (model.get("type"), normalizer.get("type"), pre_tokenizer.get("type"))
    if kinds != ("WordPiece", "BertNormalizer", "BertPreTokenizer"):
        raise EdgetuneError(f"{tokenizer_path}: the in-graph tokenizer supports BERT WordPiece tokenizers "
                            f"(WordPiece, BertNormalizer, BertPreTokenizer), not {'/'.join(map(str, kinds))}; "
                            "leave --tokenizer-in-graph off for this model")
    vocab = model["vocab"]
    words = sorted(vocab, key=vocab.__getitem__)
    if [vocab[word] for word in words] != list(range(len(words))) or any("\n" in word for word in words):
        raise EdgetuneError(f"{tokenizer_path}: the WordPiece vocabulary's ids are not 0..{len(words) - 1} in one "
                            "line each, which the op's vocabulary format needs; leave --tokenizer-in-graph off")
    cls_token, sep_token = _special_tokens(post_processor, tokenizer_path)
    lowercase = bool(normalizer.get("lowercase", True))
    strip_accents = normalizer.get("strip_accents")
    return {
        "vocab_file": "\n".join(words),
        "do_lower_case": int(lowercase),
        # The Rust BertNormalizer strips accents whenever it lowercases unless told otherwise (null).
        "strip_accents": int(lowercase if strip_accents is None else strip_accents),
        "tokenize_chinese_chars": int(normalizer.get("handle_chinese_chars", True)),
        "unk_token": model.get("unk_token", "[UNK]"),
        "suffix_indicator": model.get("continuing_subword_prefix", "##"),
        "cls_token": cls_token,
        "sep_token": sep_token,
        "max_length": max_length,
    }


def _special_tokens(post_processor: dict, tokenizer_path: Path) -> tuple[str, str]:
    """(CLS, SEP) of a `[CLS] text [SEP]` post-processor, the only template the op writes."""
    kind = post_processor.get("type")
    if kind == "BertProcessing":
        return post_processor["cls"][0], post_processor["sep"][0]
    if kind == "TemplateProcessing":
        single = post_processor.get("single") or []
        pieces = [("special", item["SpecialToken"]["id"]) if "SpecialToken" in item else ("text", None)
                  for item in single]
        if len(pieces) == 3 and pieces[1][0] == "text" and pieces[0][0] == pieces[2][0] == "special":
            return pieces[0][1], pieces[2][1]
    raise EdgetuneError(f"{tokenizer_path}: the in-graph tokenizer writes [CLS] text [SEP]; this tokenizer's "
                        f"post-processor ({kind}) does not; leave --tokenizer-in-graph off for this model")


def check_text_model(runtime_bundle, texts: list[str]) -> None:
    """Refuse the bundle unless the text model gives the Python runtime's answers on `texts` (the golden texts),
    both one text at a time, judged as a device judges golden examples (`TextModel.mismatches`)."""
    mismatches = runtime_bundle.text_model(intra_op_threads=1).mismatches(texts)
    if mismatches:
        first = mismatches[0]
        raise EdgetuneError(f"the in-graph tokenizer's model disagrees with the Python runtime on {len(mismatches)} "
                            f"golden text(s), e.g. {first['text'][:80]!r}: {first['got']} "
                            f"{first['got_probability']} against {first['expected']} {first['expected_probability']} "
                            "(onnxruntime-extensions' WordPiece differs on words the vocabulary cannot spell); "
                            "leave --tokenizer-in-graph off")
