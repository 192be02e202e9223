"""The report's figures, drawn by matplotlib (Agg) and embedded as base64 PNG: the page makes
no request of any kind."""

from __future__ import annotations

import base64
import io


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported when a figure is drawn: the report
    module is reachable from the CLI, and a training run never draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (x: a cost, lower better)."""
    sign = 1 if higher_is_better else -1
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(x2 <= x and sign * y2 >= sign * y and (x2, y2) != (x, y) for x2, y2 in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(names: list[str], costs: list[float], scores: list[float], cost_label: str, metric: str,
                higher_is_better: bool, log_x: bool = False) -> str:
    fig, ax = _pyplot().subplots(figsize=(5, 3.6))
    ax.scatter(costs, scores, color="tab:blue")
    for name, x, y in zip(names, costs, scores, strict=True):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(list(zip(costs, scores, strict=True)), higher_is_better)
    ax.step([costs[i] for i in front], [scores[i] for i in front], where="post", color="tab:red",
            linewidth=1, label="Pareto front")
    if log_x and min(costs) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(f"test {metric}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png_data_uri(fig)


def front_plot(points: list[tuple[float, float]], on_front: list[bool], labels: list[str], x_label: str,
               y_label: str, log_x: bool = False) -> str:
    """Every complete trial of a search on its first two objectives, the Pareto front in red."""
    fig, ax = _pyplot().subplots(figsize=(5.5, 4))
    rest = [p for p, f in zip(points, on_front, strict=True) if not f]
    front = sorted(p for p, f in zip(points, on_front, strict=True) if f)
    if rest:
        ax.scatter(*zip(*rest, strict=True), color="tab:blue", alpha=0.6, label="trial")
    if front:
        ax.scatter(*zip(*front, strict=True), color="tab:red", zorder=3, label="Pareto front")
        ax.plot(*zip(*front, strict=True), color="tab:red", linewidth=1, alpha=0.6)
    for label, (x, y), f in zip(labels, points, on_front, strict=True):
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points",
                    color="tab:red" if f else "0.3")
    if log_x and min(x for x, _ in points) > 0:
        ax.set_xscale("log")
    ax.set(xlabel=x_label, ylabel=y_label)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png_data_uri(fig)


def curves_plot(series: dict[str, tuple[list, list]], metric: str) -> str:
    """Validation metric (left) and train loss (right) of every entry against the step."""
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(10, 3.8))
    for name, (val, loss) in series.items():
        if val:
            left.plot(*zip(*val, strict=True), marker="o", markersize=3, label=name)
        if loss:
            right.plot(*zip(*loss, strict=True), linewidth=1, label=name)
    left.set(xlabel="step", ylabel=f"validation {metric}", title="validation")
    right.set(xlabel="step", ylabel="train loss", title="training loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    return png_data_uri(fig)


def confusion_plot(labels: list[str], matrix: list[list[int]], title: str) -> str:
    fig, ax = _pyplot().subplots(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    peak = max(max(r) for r in matrix) or 1
    for i, r in enumerate(matrix):
        for j, v in enumerate(r):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > peak / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return png_data_uri(fig)
