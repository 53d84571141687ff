"""The loss and grad-norm curves of one run as a PNG (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any


def plot_curves(records: Sequence[dict[str, Any]], *, title: str, grad_norm_threshold: float) -> bytes:
    """Two panels sharing the iteration axis: loss, and grad norm (log scale) with the alert threshold."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def series(key: str) -> tuple[list[int], list[float]]:
        points = [(r["iteration"], r[key]) for r in records
                  if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return [p[0] for p in points], [p[1] for p in points]

    fig = Figure(figsize=(7, 5), dpi=80, layout="constrained")
    loss_ax, grad_ax = fig.subplots(2, 1, sharex=True)
    loss_ax.plot(*series("loss"), color="tab:blue", linewidth=1.2)
    loss_ax.set_ylabel("lm loss")
    loss_ax.set_title(title)
    loss_ax.grid(alpha=0.3)
    its, norms = series("grad_norm")
    grad_ax.plot(its, norms, color="tab:orange", linewidth=1.2)
    grad_ax.axhline(grad_norm_threshold, color="tab:red", linestyle="--", linewidth=1,
                    label=f"alert threshold {grad_norm_threshold:g}")
    if norms and min(norms) > 0:
        grad_ax.set_yscale("log")
    grad_ax.set_ylabel("grad norm")
    grad_ax.set_xlabel("iteration")
    grad_ax.legend(loc="upper right", fontsize=8)
    grad_ax.grid(alpha=0.3)
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})  # no version stamp: same data, same bytes
    return png.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """The PNG inline as Markdown, for asset metadata (the UI renders it)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
