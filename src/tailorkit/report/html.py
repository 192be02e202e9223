"""`tailor report DIR`: one self-contained HTML page (inline CSS, PNG as data URIs, no scripts,
no links out), so it opens offline and can be mailed as one file."""

from __future__ import annotations

import html
import json
from pathlib import Path

from tailorkit.config.metrics import LOWER_IS_BETTER
from tailorkit.report.collect import collect, curves, recipe_text, search_front
from tailorkit.report.plots import confusion_plot, curves_plot, front_plot, pareto_plot
from tailorkit.study.results import best, final_dir, finished, row
from tailorkit.study.tables import HEADERS, cells
from tailorkit.track.trackers import add_report

REPORT = "report.html"
# (row key, axis label, log scale): the costs each Pareto plot sets the metric against
COSTS = [("trainable", "trainable parameters", True), ("train_seconds", "train time (s)", False),
         ("peak_memory_mb", "peak memory (MB)", False), ("latency_ms", "latency, batch 1 (ms)", False)]
STYLE = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:12px}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}
.err{color:#a00;text-align:left}"""


def build_report(folder: str | Path, out: str | Path | None = None, measure_latency: bool = True) -> Path:
    """Write the report of `folder` (default: FOLDER/report.html) and return its path; a run's
    report also goes to the run's MLflow run, where it has one."""
    folder = Path(folder)
    kind, metric, entries = collect(folder)
    rows = [row(e, metric, measure_latency) for e in entries]
    higher = metric not in LOWER_IS_BETTER
    parts = [f"<h1>{_e(kind)} report: {_e(folder.name)}</h1>",
             f"<p>{len(entries)} entries; test metric: <b>{_e(metric)}</b> "
             f"({'higher' if higher else 'lower'} is better).</p>",
             "<h2>Results</h2>", _table(rows, metric)]
    front = search_front(folder) if kind == "search" else None
    if front is not None:
        parts += _front_section(*front)
    done = [r for r in rows if r["metric_mean"] is not None]
    if done:
        parts.append("<h2>Quality against cost</h2><div class='plots'>")
        for key, label, log in COSTS:
            have = [r for r in done if r[key] is not None]
            if have:
                uri = pareto_plot([r["variant"] for r in have], [r[key] for r in have],
                                  [r["metric_mean"] for r in have], label, metric, higher, log)
                parts.append(f"<img class='plot' alt='{_e(metric)} against {_e(label)}' src='{uri}'>")
        parts.append("</div>")
    series = {e.name: curves(finished(e)[0], metric) for e in entries if finished(e)}
    if any(v or loss for v, loss in series.values()):
        parts += ["<h2>Learning curves</h2>",
                  f"<img class='plot' alt='learning curves' src='{curves_plot(series, metric)}'>"]
    top = best(rows, metric)
    if top is not None:
        entry = next(e for e in entries if e.name == top["variant"])
        summary = json.loads((final_dir(finished(entry)[0]) / "summary.json").read_text())
        matrix = (summary.get("test") or {}).get("confusion_matrix")
        if matrix:
            uri = confusion_plot(matrix["labels"], matrix["matrix"], f"{top['variant']} (test)")
            parts += [f"<h2>Confusion matrix of the best: {_e(top['variant'])}</h2>",
                      f"<img class='plot' alt='confusion matrix' src='{uri}'>"]
    parts.append("<h2>Recipes</h2>")
    for entry in entries:
        parts.append(f"<h3>{_e(entry.name)}</h3><pre>{_e(recipe_text(entry))}</pre>")
        for error in entry.errors:
            parts.append(f"<p class='err'>failed: {_e(error.splitlines()[0])}</p>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(folder.name)} report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(out) if out else folder / REPORT
    path.write_text(page, encoding="utf-8")
    if kind == "run":
        add_report(folder, path)  # to the run's MLflow run, where it was tracked to one
    return path


def _front_section(objectives: list[dict], trials: list[dict]) -> list[str]:
    """The search's Pareto front (validation values, as the search judged them): the first two
    objectives as a scatter with the front highlighted, and the front as a table."""
    names = [o["metric"] for o in objectives]
    front = [t for t in trials if t.get("pareto")]
    goal = ", ".join(f"{o['direction']} {o['metric']}" for o in objectives)
    parts = ["<h2>Pareto front of the search</h2>",
             f"<p>{len(front)} of {len(trials)} complete trials (repeats of a point left out) are on the "
             f"front ({_e(goal)}; "
             "validation values, as the search judged them).</p>"]
    if trials:
        x, y = names[1], names[0]
        uri = front_plot([(t[x], t[y]) for t in trials], [bool(t.get("pareto")) for t in trials],
                         [str(t["number"]) for t in trials], x, y, log_x=x == "trainable_params")
        parts.append(f"<img class='plot' alt='Pareto front: {_e(y)} against {_e(x)}' src='{uri}'>")
    params = [k for k in (trials[0] if trials else {}) if k not in ("number", "pareto", "steps", "seconds",
                                                                    "duplicate_of", *names)]
    head = "".join(f"<th>{_e(h)}</th>" for h in ["trial", *names, *params])
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(t.get(k)))}</td>" for k in ["number", *names, *params])
                   + "</tr>" for t in front)
    parts.append(f"<table id='front'><tr>{head}</tr>{body}</table>")
    return parts


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def _table(rows: list[dict], metric: str) -> str:
    head = "".join(f"<th>{_e(h.format(metric=metric))}</th>" for h in HEADERS.values())
    body = "".join("<tr>" + "".join(f"<td{' class=err' if k == 'error' else ''}>{_e(v)}</td>"
                                    for k, v in cells(r).items()) + "</tr>" for r in rows)
    return f"<table id='results'><tr>{head}</tr>{body}</table>"


def _e(text) -> str:
    return html.escape(str(text), quote=True)
