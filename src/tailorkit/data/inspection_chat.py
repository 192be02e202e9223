"""`tailor data inspect --render N`: instruction data as the causal LM will see it.

The examples go through the training path itself (to_conversations, then render_all of
templates.py, cut to max_length), so what is shown is what is trained: the text the
tokens decode to, with the supervised tokens (labels other than -100) marked. The warnings
catch set-ups that train without error but give a model that misbehaves.
"""

from __future__ import annotations

import pandas as pd

from tailorkit.config.data import ChatColumns
from tailorkit.data.instructions import detect_format, to_conversations
from tailorkit.data.templates import IGNORE, TEMPLATES, render_all, resolve_template, stop_token_ids
from tailorkit.errors import TailorError

OPEN, CLOSE = "⟦", "⟧"  # around supervised tokens in the text view


def render_report(frame: pd.DataFrame, source: str, tokenizer, template: str | None, fmt: str,
                  columns: ChatColumns, max_length: int, n: int) -> dict:
    """The first `n` rows rendered and marked, and the warnings about the set-up."""
    fmt = detect_format(list(frame.columns), columns) if fmt == "auto" else fmt
    if tokenizer.pad_token is None:  # as load_causal_lm does before training
        tokenizer.pad_token = tokenizer.eos_token
    shown = frame.head(n)
    chats = to_conversations(shown, fmt, columns, source)
    report = {"source": source, "rows": len(frame), "format": fmt, "max_length": max_length,
              "template": template or "the tokenizer's own", "warnings": [], "examples": []}
    warnings = report["warnings"]
    if tokenizer.eos_token is not None and tokenizer.pad_token_id == tokenizer.eos_token_id:
        warnings.append(
            f"the pad token is EOS ({tokenizer.eos_token!r}): tailorkit masks padding by position, so EOS "
            "stays supervised here, but a collator that masks labels by pad id would drop every EOS "
            "and the model would never learn to stop")
    documents = fmt == "text"
    if not documents and template is None and not _own_template(tokenizer):
        warnings.append(f"the tokenizer has no chat template and none is named: training refuses this "
                        f"data; name one with data.template (--template): {', '.join(TEMPLATES)}")
        return report
    rendered = render_all(chats, tokenizer, None if documents else resolve_template(tokenizer, template),
                          max_length, source, rows=[int(i) + 1 for i in shown.index])
    stops = set(stop_token_ids(tokenizer))
    no_stop = []
    for row, ids, labels in zip(shown.index, rendered.input_ids, rendered.labels, strict=True):
        supervised = [i for i, label in enumerate(labels) if label != IGNORE]
        if not any(ids[i] in stops for i in supervised):
            no_stop.append(int(row) + 1)
        report["examples"].append({
            "row": int(row) + 1, "tokens": len(ids), "supervised": len(supervised),
            "truncated": int(row) + 1 in rendered.truncated,
            "segments": _segments(tokenizer, ids, labels)})
    if no_stop:
        names = ", ".join(repr(tokenizer.convert_ids_to_tokens(i)) for i in sorted(stops))
        cut = [r for r in no_stop if r in rendered.truncated]
        why = f" ({len(cut)} of them cut at max_length={max_length})" if cut else ""
        warnings.append(
            f"EOS is not supervised in {len(no_stop)} of {len(chats)} examples (rows "
            f"{', '.join(map(str, no_stop[:10]))}){why}: no trained token is a stop token ({names}), "
            "so the model would never learn to stop; use a template that ends each reply with one")
    return report


def _own_template(tokenizer) -> bool:
    try:
        resolve_template(tokenizer, None)
    except TailorError:
        return False
    return True


def _segments(tokenizer, ids: list[int], labels: list[int]) -> list[dict]:
    """Runs of consecutive tokens that are all supervised or all not, decoded with special tokens."""
    out: list[dict] = []
    start = 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or (labels[end] != IGNORE) != (labels[start] != IGNORE):
            out.append({"text": tokenizer.decode(ids[start:end], skip_special_tokens=False),
                        "supervised": labels[start] != IGNORE})
            start = end
    return out


def render_text(r: dict) -> str:
    """The terminal view: each example with its supervised tokens between ⟦ and ⟧."""
    lines = [f"Instruction data: {r['source']} ({r['rows']:,} rows, format {r['format']}), "
             f"template: {r['template']}, max_length {r['max_length']}",
             f"supervised tokens (the loss is computed on them) are between {OPEN} and {CLOSE}", ""]
    for ex in r["examples"]:
        cut = ", cut at max_length" if ex["truncated"] else ""
        lines.append(f"-- row {ex['row']}: {ex['tokens']} tokens, {ex['supervised']} supervised{cut} --")
        lines.append("".join(f"{OPEN}{s['text']}{CLOSE}" if s["supervised"] else s["text"]
                             for s in ex["segments"]))
        lines.append("")
    lines += [f"warning: {w}" for w in r["warnings"]] or ["no warnings"]
    return "\n".join(lines)
