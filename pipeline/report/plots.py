"""The report's figures, drawn with matplotlib (Agg: no display needed) and returned as PNG bytes."""
from __future__ import annotations

import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

STATE_COLOURS = {"COMPLETE": "#2e7d32", "CACHED": "#90a4ae", "FAILED": "#c62828", "RUNNING": "#f9a825"}
TRAIN_COLOUR, VALIDATION_COLOUR = "#1f77b4", "#ff7f0e"


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def timeline(rows: Sequence[tuple[str, float, float, str]]) -> bytes:
    """Gantt chart of (component, start offset s, duration s, state), first component on top."""
    figure, axes = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.0))
    for index, (name, start, seconds, state) in enumerate(rows):
        axes.barh(index, max(seconds, 0.2), left=start, color=STATE_COLOURS.get(state, "#6a1b9a"))
        axes.text(start + max(seconds, 0.2), index, f" {seconds:.1f} s {state.lower()}", va="center", fontsize=8)
    axes.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the run started")
    axes.set_xlim(0, max((r[1] + r[2] for r in rows), default=1) * 1.25)
    return _png(figure)


def bars(labels: Sequence[str], values: Sequence[float], title: str, horizontal: bool = False) -> bytes:
    """A small bar chart (histogram buckets, top categorical values)."""
    figure, axes = plt.subplots(figsize=(2.6, 1.4))
    if horizontal:
        axes.barh(range(len(values)), values, color=TRAIN_COLOUR)
        axes.set_yticks(range(len(labels)), labels, fontsize=7)
        axes.invert_yaxis()
    else:
        axes.bar(range(len(values)), values, color=TRAIN_COLOUR, width=1.0, edgecolor="white")
        step = max(1, len(labels) // 4)
        axes.set_xticks(range(0, len(labels), step), labels[::step], fontsize=7)
    axes.set_title(title, fontsize=8)
    axes.tick_params(labelsize=7)
    return _png(figure)


def training_curves(epochs: Sequence[dict], chosen_epoch: int | None) -> bytes:
    """One panel per metric: training and validation per epoch, the exported epoch marked."""
    names = sorted({k for e in epochs for k in e if k != "epoch" and not k.startswith("val_")}
                   | {k[4:] for e in epochs for k in e if k.startswith("val_")})
    names.sort(key=lambda n: (n != "loss", n))
    columns = min(3, len(names)) or 1
    rows = -(-len(names) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.5 * rows), squeeze=False)
    x = [e["epoch"] for e in epochs]
    for axes, name in zip(grid.flat, names):
        for key, label, colour in ((name, "train", TRAIN_COLOUR), (f"val_{name}", "validation", VALIDATION_COLOUR)):
            values = [e.get(key, np.nan) for e in epochs]
            if not all(np.isnan(values)):
                axes.plot(x, values, marker=".", label=label, color=colour)
        if chosen_epoch:
            axes.axvline(chosen_epoch, color="#555", linestyle="--", linewidth=1,
                         label=f"exported (epoch {chosen_epoch})")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("epoch", fontsize=8)
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes.tick_params(labelsize=7)
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(names):]:
        axes.axis("off")
    return _png(figure)


def curve(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str, title: str,
          diagonal: bool = False) -> bytes:
    """ROC, precision-recall or calibration curve."""
    figure, axes = plt.subplots(figsize=(3.6, 3.2))
    axes.plot(x, y, marker=".", markersize=3, color=TRAIN_COLOUR)
    if diagonal:
        low, high = min(min(x), min(y)), max(max(x), max(y))
        axes.plot([low, high], [low, high], color="#999", linestyle=":", linewidth=1)
    axes.set_xlabel(xlabel, fontsize=8)
    axes.set_ylabel(ylabel, fontsize=8)
    axes.set_title(title, fontsize=9)
    axes.tick_params(labelsize=7)
    return _png(figure)


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str]) -> bytes:
    """Counts with true labels on rows and predicted labels on columns."""
    size = max(3.0, 0.45 * len(labels) + 1.5)
    figure, axes = plt.subplots(figsize=(size, size * 0.9))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        axes.text(column, row, f"{value:g}", ha="center", va="center", fontsize=7,
                  color="white" if value > matrix.max() / 2 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted", fontsize=8)
    axes.set_ylabel("true", fontsize=8)
    return _png(figure)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], wrong: Sequence[bool], columns: int = 8) -> bytes:
    """Eval images with `true -> predicted (p)` captions; wrong predictions captioned in red."""
    rows = -(-len(images) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, image, title, is_wrong in zip(grid.flat, images, titles, wrong):
        axes.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
        axes.set_title(title, fontsize=7, color="#c62828" if is_wrong else "#2e7d32")
    return _png(figure)
