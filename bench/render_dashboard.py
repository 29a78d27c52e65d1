"""Renders docs/dashboard.png from real data: a served gateway (stub models and the real
SmolLM2), real traffic through the OpenAI SDK, a real Prometheus scraping it, and the
dashboard's own PromQL (dashboards/mia-gateway.json) run through Prometheus' HTTP API
(`query_range`), drawn panel by panel with matplotlib in the dashboard's layout.

    .venv/bin/python bench/render_dashboard.py [--seconds 150] [--out docs/dashboard.png]

Needs `prometheus` on PATH (scripts/install.sh --test) and matplotlib in the venv.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import openai  # noqa: E402

from tests.e2e.test_prometheus import (  # noqa: E402
    CONFIG,
    DASHBOARD,
    MESSAGES,
    REAL_MODEL,
    STUB_MODELS,
    Prometheus,
    run_prometheus,
    substitute,
)
from tests.support.served import ServedGateway, serve  # noqa: E402

# --- traffic ---------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1


def _one(client: openai.OpenAI, rng: random.Random, tally: Tally, *, real_share: float) -> None:
    roll = rng.random()
    try:
        if roll < 0.05:
            try:
                client.chat.completions.create(model="no-such-model", messages=MESSAGES)  # type: ignore[arg-type]
            except openai.NotFoundError:
                tally.add("404")
            return
        model = REAL_MODEL if rng.random() < real_share else rng.choice(STUB_MODELS)
        max_tokens = rng.choice((16, 32, 48, 64))
        if roll < 0.12:
            stream = client.chat.completions.create(
                model=model,
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=256,
                stream=True,
            )
            for i, _ in enumerate(stream):
                if i >= rng.randint(2, 8):
                    break
            stream.close()
            tally.add(f"cancel {model}")
            return
        if rng.random() < 0.5:
            for _ in client.chat.completions.create(
                model=model,
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                stream=True,
            ):
                pass
        else:
            client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=max_tokens)  # type: ignore[arg-type]
        tally.add(model)
    except openai.APIError as exc:
        tally.add(f"error {type(exc).__name__}")


def drive(gw: ServedGateway, seconds: float, seed: int = 7) -> Tally:
    """Three phases: a light start, a burst (queueing on the real model), a cooler end
    after an explicit unload of the real model."""
    tally = Tally()
    t0 = time.monotonic()
    phases = [(0.0, 0.3, 1, 0.5, 0.4), (0.3, 0.6, 4, 0.6, 0.0), (0.6, 1.0, 2, 0.4, 0.3)]

    def worker(wid: int, end: float, real_share: float, pause: float) -> None:
        rng = random.Random(seed * 100 + wid)
        with openai.OpenAI(base_url=gw.api_url, api_key="unused", max_retries=0, timeout=120.0) as client:
            while time.monotonic() < end:
                _one(client, rng, tally, real_share=real_share)
                time.sleep(rng.uniform(0, pause))

    for start, stop, workers, real_share, pause in phases:
        begin, end = t0 + start * seconds, t0 + stop * seconds
        time.sleep(max(0.0, begin - time.monotonic()))
        if start == 0.6:
            r = httpx.post(f"{gw.base_url}/admin/models/{REAL_MODEL}/unload", timeout=30.0)
            tally.add(f"unload {r.status_code}")
            time.sleep(3.0)  # let the unloaded state show before the next request loads it again
        threads = [
            threading.Thread(target=worker, args=(i, end, real_share, pause), daemon=True) for i in range(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return tally


# --- data --------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float]


def _legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or json.dumps(labels)


def fetch(prom: Prometheus, panel: dict[str, Any], start: float, end: float, step: float, rate: str) -> list[Series]:
    out = []
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], rate_interval=rate, range_=f"{int(end - start)}s")
        if target.get("instant"):
            for s in prom.query(expr):
                out.append(Series(_legend(target.get("legendFormat", ""), s["metric"]), [end], [float(s["value"][1])]))
            continue
        for s in prom.query_range(expr, start, end, step):
            times = [float(t) for t, _ in s["values"]]
            values = [float(v) for _, v in s["values"]]
            out.append(Series(_legend(target.get("legendFormat", ""), s["metric"]), times, values))
    out.sort(key=lambda s: s.name)
    return out


# --- drawing -----------------------------------------------------------------------

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


# --- main --------------------------------------------------------------------------


def collect(args: argparse.Namespace, dashboard: dict[str, Any]) -> dict[str, Any]:
    """Serves, drives traffic, lets Prometheus scrape, and runs every panel's queries."""
    with tempfile.TemporaryDirectory(prefix="mia-dashboard-") as tmp:
        tmp_dir = Path(tmp)
        with serve(CONFIG, tmp_dir / "gw") as gw, run_prometheus(f"127.0.0.1:{gw.port}", tmp_dir / "prom") as prom:
            prom.wait_scrapes(3)
            start = time.time()
            print(f"driving traffic for {args.seconds:.0f} s ...", flush=True)
            tally = drive(gw, args.seconds)
            prom.wait_scrapes(5)
            end = time.time()
            print("requests:", json.dumps(tally.counts, sort_keys=True), flush=True)
            panels = {
                str(p["id"]): [s.__dict__ for s in fetch(prom, p, start - 10, end, args.step, args.rate_interval)]
                for p in dashboard["panels"]
                if p["type"] != "row"
            }
    n = sum(v for k, v in tally.counts.items() if not k.startswith(("404", "unload", "error")))
    stamp = datetime.fromtimestamp(start).strftime("%Y-%m-%d %H:%M")
    subtitle = (
        f"real data, {stamp}: {n} generations in {args.seconds:.0f} s on {REAL_MODEL} (real, llama.cpp) and "
        f"{', '.join(STUB_MODELS)} (stub); Prometheus scraping every 1 s; $__rate_interval = {args.rate_interval}"
    )
    return {"t0": start - 10, "t1": end, "subtitle": subtitle, "requests": tally.counts, "panels": panels}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=150.0, help="how long to drive traffic")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    ap.add_argument("--rate-interval", default="30s", help="what $__rate_interval stands for")
    ap.add_argument("--step", type=float, default=2.0, help="query_range step, seconds")
    ap.add_argument("--save-data", type=Path, help="also write the queried series to this JSON file")
    ap.add_argument("--from-data", type=Path, help="redraw from a --save-data file instead of collecting")
    args = ap.parse_args(argv)

    dashboard = json.loads(DASHBOARD.read_text())
    raw = json.loads(args.from_data.read_text()) if args.from_data else collect(args, dashboard)
    if args.save_data:
        args.save_data.write_text(json.dumps(raw))
    data = {int(k): [Series(**s) for s in v] for k, v in raw["panels"].items()}
    empty = [p["title"] for p in dashboard["panels"] if p["type"] != "row" and not data.get(p["id"])]
    if empty:
        print("panels without data:", empty, file=sys.stderr)
    render(dashboard, data, raw["t0"], raw["t1"], args.out, raw["subtitle"])
    print(f"wrote {args.out}")
    return 1 if empty else 0


if __name__ == "__main__":
    raise SystemExit(main())
