"""The inspection report (`inspection.inspect_table`) as terminal text and as one HTML page."""

from __future__ import annotations

import html

FINDINGS = (("empty", "empty text"),
            ("mojibake", "mojibake (text decoded with the wrong codec; ftfy repairs it)"),
            ("garbled", "characters no repair recovers (U+FFFD, private use)"),
            ("html", "HTML tags or entities"), ("control_characters", "control characters"))
WIDTH = 100


def _short(text: str, width: int = WIDTH) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= width else text[:width - 3] + "..."


def _share(n: int, total: int) -> str:
    return f"{n:,} ({n / max(1, total):.1%})"


def text_report(r: dict) -> str:
    n = r["rows"]
    out = [f"{r['source']}: {n:,} rows; text column '{r['text_column']}'"
           + (f", label column '{r['label_column']}'" if r.get("label_column") else "")]
    labels = r.get("labels")
    if labels and labels["kind"] == "classes":
        out.append(f"classes ({len(labels['counts'])}, largest/smallest {labels['imbalance']}x): "
                   + ", ".join(f"{k} {v:,} ({labels['shares'][k]:.1%})" for k, v in labels["counts"].items()))
    elif labels:
        out.append(f"target: mean {labels['mean']:.4g}, std {labels['std']:.4g}, "
                   f"range {labels['min']:.4g} .. {labels['max']:.4g}")
    for group in (labels or {}).get("lookalikes", []):
        out.append(f"labels that differ only in case or spaces: {', '.join(map(repr, group))} "
                   "(each is a class of its own in training; make them one)")
    if labels and labels.get("missing"):
        out.append(f"missing label: {labels['missing']:,} rows (training refuses them; drop or label them)")
    ln = r["lengths"]
    if "median" in ln:
        line = (f"length in {ln['unit']}" + (f" ({ln['tokenizer']})" if "tokenizer" in ln else "")
                + f": median {ln['median']:.0f}, 95th percentile {ln['p95']:.0f}, max {ln['max']}")
        if "max_length" in ln:
            line += f"; {_share(ln['truncated'], n)} longer than max_length {ln['max_length']} (cut)"
        out.append(line)
    for key, title in FINDINGS:
        finding = r[key]
        out.append(f"{title}: {_share(finding['count'], n)}")
        for ex in finding["examples"][:3]:
            out.append(f"    row {ex['row']}: {_short(ex['text'])}")
            if "fixed" in ex and ex["fixed"] != ex["text"]:
                out.append(f"      -> {_short(ex['fixed'])}")
    d = r["duplicates"]
    out.append(f"exact duplicates (normalised text): {d['groups']:,} groups, {_share(d['extra_rows'], n)} "
               "extra rows")
    _group_lines(out, d["examples"])
    if "near_duplicates" in r:
        nd = r["near_duplicates"]
        out.append(f"near duplicates (Jaccard >= {nd['threshold']}, beyond exact): {nd['groups']:,} groups, "
                   f"{_share(nd['extra_rows'], n)} extra rows")
        _group_lines(out, nd["examples"])
    if "label_conflicts" in r:
        c = r["label_conflicts"]
        out.append(f"same text, different labels: {c['groups']:,} groups ({c['rows']:,} rows)")
        _group_lines(out, c["examples"])
    if "label_errors" in r:
        le = r["label_errors"]
        via = "TF-IDF" if le["features"] == "tfidf" else f"{le['model']} features"
        out.append(f"likely label errors (cleanlab, out-of-fold logistic regression on {via}): "
                   + (le["note"] if le["note"] else _share(le["count"], n)))
        for ex in le["examples"][:3]:
            out.append(f"    row {ex['row']} [{ex['label']}, model says {ex['predicted']} "
                       f"p={ex['confidence']:.2f}]: {_short(ex['text'], 80)}")
    if "test" in r:
        t = r["test"]
        line = f"test {t['source']}: {t['rows']:,} rows; {_share(t['exact'], t['rows'])} in train exactly"
        if "near" in t:
            line += f", {_share(t['near'], t['rows'])} more nearly (Jaccard >= {t['threshold']})"
        out.append(line)
        for ex in t["examples"][:3]:
            out.append(f"    test row {ex['test_row']}: {_short(ex['text'])}")
    return "\n".join(out)


def _group_lines(out: list[str], examples: list[dict]) -> None:
    for group in examples[:2]:
        labels = group.get("labels") or [""] * len(group["rows"])
        for row, text, label in list(zip(group["rows"], group["texts"], labels, strict=True))[:3]:
            out.append(f"    row {row}" + (f" [{label}]" if label else "") + f": {_short(text, 80)}")
        out.append("    --")


def html_report(r: dict) -> str:
    """One self-contained page: the summary as text, then every example table."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>data inspection: {e(r['source'])}"
             "</title><style>body{font-family:sans-serif;margin:2em;max-width:70em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;"
             "vertical-align:top}pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}</style></head><body>",
             f"<h1>Data inspection: {e(r['source'])}</h1>", f"<pre>{e(text_report(r))}</pre>"]
    for key, title in FINDINGS:
        examples = r[key]["examples"]
        if examples:
            parts.append(f"<h2>{e(title)} ({r[key]['count']:,})</h2><table><tr><th>row</th><th>text</th>"
                         + ("<th>repaired</th>" if key == "mojibake" else "") + "</tr>")
            for ex in examples:
                fixed = f"<td>{e(ex['fixed'])}</td>" if key == "mojibake" else ""
                parts.append(f"<tr><td>{ex['row']}</td><td>{e(ex['text'])}</td>{fixed}</tr>")
            parts.append("</table>")
    for key, title in (("duplicates", "exact duplicates"), ("near_duplicates", "near duplicates"),
                       ("label_conflicts", "same text, different labels")):
        if key in r and r[key]["examples"]:
            parts.append(f"<h2>{e(title)} ({r[key]['groups']:,} groups)</h2><table>"
                         "<tr><th>rows</th><th>labels</th><th>texts</th></tr>")
            for g in r[key]["examples"]:
                parts.append(f"<tr><td>{', '.join(map(str, g['rows']))}</td>"
                             f"<td>{e(', '.join(g.get('labels', [])))}</td>"
                             f"<td>{'<br>'.join(e(t) for t in g['texts'])}</td></tr>")
            parts.append("</table>")
    if r.get("label_errors", {}).get("examples"):
        le = r["label_errors"]
        parts.append(f"<h2>likely label errors ({le['count']:,})</h2><table><tr><th>row</th><th>label</th>"
                     "<th>model says</th><th>p</th><th>text</th></tr>")
        for ex in le["examples"]:
            parts.append(f"<tr><td>{ex['row']}</td><td>{e(ex['label'])}</td><td>{e(ex['predicted'])}</td>"
                         f"<td>{ex['confidence']:.2f}</td><td>{e(ex['text'])}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
