"""`edgetune data inspect --task chat`: rows per split and token lengths under the model's chat template.

The percentiles are what `max_length` is chosen from: p99 of the whole conversation says how long a
training sequence must be to keep 99% of the answers whole.
"""

from __future__ import annotations

from edgetune.data.chat import ChatData
from edgetune.tasks.text_generation.template_lengths import TemplateLengths, percentiles, template_lengths


def build_chat_data_report(chat: ChatData, tokenizer=None, max_length: int | None = None) -> dict:
    """Per split: rows, source, intents and p50/p90/p99/max of prompt, response and total length.

    Lengths are tokens after the chat template with `tokenizer`, else whitespace words (no template).
    """
    splits = {}
    for split in (chat.train, chat.validation, chat.test):
        if split is None:
            continue
        if tokenizer is not None:
            lengths = template_lengths(tokenizer, split.examples)
        else:
            prompt = [len(example.prompt.split()) for example in split.examples]
            response = [len(example.response.split()) for example in split.examples]
            lengths = TemplateLengths([p + r for p, r in zip(prompt, response, strict=True)], prompt)
        entry = {"rows": len(split), "source": split.source,
                 "intents": len({example.intent for example in split.examples if example.intent}),
                 "prompt": percentiles(lengths.prompt), "response": percentiles(lengths.response),
                 "total": percentiles(lengths.total)}
        if max_length is not None:
            entry["over_max_length"] = sum(count > max_length for count in lengths.total)
        splits[split.name] = entry
    return {"unit": "tokens after the chat template" if tokenizer is not None else "whitespace words",
            "max_length": max_length, "splits": splits, "notes": list(chat.notes),
            "fingerprint": chat.fingerprint()}


def format_chat_data_report(report: dict) -> str:
    """The report as a small table a person reads before choosing max_length."""
    lines = [f"lengths in {report['unit']}" + (f"; max_length {report['max_length']}" if report["max_length"] else "")]
    lines.append(f"{'split':<11} {'rows':>6} {'intents':>7}  {'part':<8} {'p50':>5} {'p90':>5} {'p99':>5} {'max':>5}")
    for name, entry in report["splits"].items():
        for index, part in enumerate(("prompt", "response", "total")):
            head = f"{name:<11} {entry['rows']:>6} {entry['intents']:>7}" if index == 0 else " " * 26
            figures = entry[part]
            lines.append(f"{head}  {part:<8} {figures['p50']:>5} {figures['p90']:>5} {figures['p99']:>5} "
                         f"{figures['max']:>5}")
        if "over_max_length" in entry:
            lines.append(" " * 28 + f"{entry['over_max_length']} over max_length")
        lines.append(" " * 28 + f"from {entry['source']}")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)
