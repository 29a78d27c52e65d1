"""Draws a Grafana dashboard's panels with matplotlib, in the dashboard's own layout
(grid positions, units, colour overrides, stacking, log scales, value mappings), from
series already queried: bench/render_dashboard.py's picture of dashboards/mia-gateway.json."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Series", "render"]


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float]


BG = "#111217"
PANEL = "#181b1f"
GRID = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a", "#37872d", "#c4162a"]
NAMED = {
    "green": "#73bf69",
    "orange": "#ff9830",
    "red": "#f2495c",
    "yellow": "#fade2a",
    "purple": "#b877d9",
    "blue": "#5794f2",
    "text": "#5a5f6a",
}
UNITS = {"s": "seconds", "reqps": "req/s", "ops": "per second", "short": "", "percentunit": "fraction"}


def _color(panel: dict[str, Any], name: str, i: int) -> str:
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"]["id"] == "byRegexp" and re.search(o["matcher"]["options"], name):
            for p in o["properties"]:
                if p["id"] == "color":
                    return NAMED.get(p["value"]["fixedColor"], p["value"]["fixedColor"])
    return PALETTE[i % len(PALETTE)]


def _unit(panel: dict[str, Any]) -> str:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    return unit.removeprefix("suffix:").strip() if unit.startswith("suffix:") else UNITS.get(unit, unit)


def _fmt(v: float, unit: str) -> str:
    if not math.isfinite(v):
        return "-"
    if unit == "seconds":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}"


def _style(ax: Any) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=7)
    ax.grid(True, color=GRID, linewidth=0.6)


def draw_timeseries(
    ax: Any, panel: dict[str, Any], series: list[Series], t0: float, t1: float, legend_at: tuple[float, float]
) -> None:
    """`legend_at`: the legend's top-left corner, in figure coordinates."""
    import numpy as np

    unit = _unit(panel)
    custom = panel["fieldConfig"]["defaults"].get("custom", {})
    log = custom.get("scaleDistribution", {}).get("type") == "log"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    rows = []
    base: np.ndarray | None = None
    for i, s in enumerate(series):
        x = (np.array(s.times) - t0) / 60.0
        y = np.array(s.values, dtype=float)
        color = _color(panel, s.name, i)
        if stacked:
            y0 = np.zeros_like(y) if base is None or len(base) != len(y) else base
            y1 = y0 + np.nan_to_num(y)
            if np.any(np.nan_to_num(y) > 0):  # an all-zero layer would only redraw the outline of the ones below
                ax.fill_between(x, y0, y1, color=color, alpha=0.55, linewidth=0, step="mid")
                ax.plot(x, y1, color=color, linewidth=1.0, drawstyle="steps-mid")
            base = y1
        else:
            ax.plot(x, y, color=color, linewidth=1.6)
            if not log:
                ax.fill_between(x, 0, y, color=color, alpha=0.08)
        finite = y[np.isfinite(y)]
        mean = float(finite.mean()) if finite.size else math.nan
        peak = float(finite.max()) if finite.size else math.nan
        rows.append((color, s.name, mean, peak))
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=1)  # tokens/s: one decade below the slowest real model is plenty
    elif not stacked:
        ax.set_ylim(bottom=0)
    if unit:
        ax.set_ylabel(unit, color=MUTED, fontsize=7)
    ax.set_xlabel("minutes", color=MUTED, fontsize=7)
    ax.set_xlim(0, (t1 - t0) / 60.0)
    # a Grafana-like table legend: name, mean, max
    lines = [f"{name[:38]:<38} mean {_fmt(mean, unit):>9}  max {_fmt(peak, unit):>9}" for _, name, mean, peak in rows]
    handles = [ax.plot([], [], color=c, linewidth=3)[0] for c, *_ in rows]
    if handles:
        ax.legend(
            handles,
            lines,
            loc="upper left",
            bbox_to_anchor=legend_at,
            bbox_transform=ax.figure.transFigure,
            ncol=1,
            fontsize=6.3,
            frameon=False,
            labelcolor=TEXT,
            prop={"family": "monospace", "size": 6.3},
            handlelength=1.2,
        )


def draw_state_timeline(ax: Any, panel: dict[str, Any], series: list[Series], t0: float, t1: float) -> None:
    mapping = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    for row, s in enumerate(series):
        prev: tuple[float, float] | None = None
        segments: list[tuple[float, float, float]] = []
        for t, v in zip(s.times, s.values, strict=True):
            if prev is not None and prev[1] == v and math.isfinite(v):
                continue
            if prev is not None:
                segments.append((prev[0], t, prev[1]))
            prev = (t, v)
        if prev is not None:
            segments.append((prev[0], s.times[-1] + (s.times[1] - s.times[0] if len(s.times) > 1 else 1), prev[1]))
        for a, b, v in segments:
            key = str(int(v)) if math.isfinite(v) else None
            m = mapping.get(key or "", {"text": "no data", "color": "text"})
            color = NAMED.get(m["color"], m["color"])
            x0, x1 = (a - t0) / 60.0, (b - t0) / 60.0
            ax.barh(row, x1 - x0, left=x0, height=0.8, color=color, edgecolor=PANEL, linewidth=1)
            if x1 - x0 > 0.25:
                ax.text(x0 + 0.05, row, m["text"], va="center", ha="left", fontsize=6.5, color=BG)
    ax.set_yticks(range(len(series)), [s.name for s in series], fontsize=7, color=TEXT)
    ax.invert_yaxis()
    ax.set_xlabel("minutes", color=MUTED, fontsize=7)
    ax.grid(False)
    ax.set_xlim(0, (t1 - t0) / 60.0)


def draw_bargauge(ax: Any, panel: dict[str, Any], series: list[Series]) -> None:
    names = [s.name for s in series]
    values = [s.values[-1] for s in series]
    colors = [_color(panel, n, i) for i, n in enumerate(names)]
    ax.barh(range(len(names)), values, color=colors, height=0.7)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.0f}", va="center", ha="left", fontsize=7, color=TEXT)
    ax.set_yticks(range(len(names)), names, fontsize=7, color=TEXT)
    ax.invert_yaxis()
    ax.set_xlim(0, max([*values, 1]) * 1.15)
    ax.grid(True, axis="x", color=GRID)
    ax.set_axisbelow(True)


def render(
    dashboard: dict[str, Any], data: dict[int, list[Series]], t0: float, t1: float, out: Path, subtitle: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = dashboard["panels"]
    total_h = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_h = 0.52  # inches per grid row
    fig = plt.figure(figsize=(20, total_h * unit_h + 1.0), facecolor=BG)
    top = 1 - 0.9 / (total_h * unit_h + 1.0)
    fig.text(0.01, top + (1 - top) * 0.45, dashboard["title"], color=TEXT, fontsize=15, weight="bold")
    fig.text(0.11, top + (1 - top) * 0.47, subtitle, color=MUTED, fontsize=9)
    gs = fig.add_gridspec(total_h, 24, left=0.01, right=0.99, top=top, bottom=0.005, hspace=0.0, wspace=0.0)
    for p in panels:
        g = p["gridPos"]
        if p["type"] == "row":
            ax = fig.add_subplot(gs[g["y"] : g["y"] + 1, :])
            ax.axis("off")
            ax.text(0.0, 0.2, p["title"], color=TEXT, fontsize=11, weight="bold", transform=ax.transAxes)
            continue
        outer = gs[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]]
        frame = fig.add_subplot(outer)
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRID)
        frame.set_title("  " + p["title"], loc="left", color=TEXT, fontsize=9, pad=-12, y=1.0)
        series = data.get(p["id"], [])
        bbox = frame.get_position()
        w, h = bbox.width, bbox.height
        if p["type"] == "timeseries":
            panel_in = g["h"] * unit_h
            legend_h = min(0.55, (0.5 + 0.13 * len(series)) / panel_in)  # x axis + one line per series
            ax = fig.add_axes((bbox.x0 + w * 0.075, bbox.y0 + h * legend_h, w * 0.9, h * (0.86 - legend_h)))
            legend_at = (bbox.x0 + w * 0.01, bbox.y0 + h * (legend_h - 0.3 / panel_in))
        elif p["type"] == "state-timeline":
            ax = fig.add_axes((bbox.x0 + w * 0.2, bbox.y0 + h * 0.14, w * 0.77, h * 0.7))
        else:
            ax = fig.add_axes((bbox.x0 + w * 0.3, bbox.y0 + h * 0.06, w * 0.64, h * 0.78))
        _style(ax)
        if not series:
            ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED, transform=ax.transAxes)
            continue
        if p["type"] == "timeseries":
            draw_timeseries(ax, p, series, t0, t1, legend_at)
        elif p["type"] == "state-timeline":
            draw_state_timeline(ax, p, series, t0, t1)
        elif p["type"] == "bargauge":
            draw_bargauge(ax, p, series)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor=BG)
    plt.close(fig)
