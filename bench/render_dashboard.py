"""Renders docs/dashboard.png from real data: a served gateway (stub models and the real
SmolLM2), real traffic through the OpenAI SDK, a real Prometheus scraping it, and the
dashboard's own PromQL (dashboards/mia-gateway.json) run through Prometheus' HTTP API
(`query_range`), drawn panel by panel with matplotlib in the dashboard's layout.

    .venv/bin/python bench/render_dashboard.py [--seconds 150] [--out docs/dashboard.png]

The served settings are bench/dashboard.toml. Needs a `prometheus` binary (scripts/install.sh
--test unpacks one into .venv/bin; one on PATH also does) and the `bench` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
from dashboard_draw import Series, render
from processes import REPO, ServedGateway, serve_gateway
from prometheus_run import Prometheus, grafana_macros, run_prometheus

DASHBOARD = REPO / "dashboards" / "mia-gateway.json"
SETTINGS = REPO / "bench" / "dashboard.toml"
MESSAGES = [{"role": "user", "content": "Write two sentences about the sea."}]


def served_models() -> tuple[str, tuple[str, ...]]:
    """The real model and the stub models of bench/dashboard.toml."""
    models = tomllib.loads(SETTINGS.read_text())["models"]
    real = [m["id"] for m in models if m["provider"] != "stub"]
    stubs = tuple(m["id"] for m in models if m["provider"] == "stub")
    if len(real) != 1:
        raise RuntimeError(f"{SETTINGS} must serve exactly one real model, not {real}")
    return real[0], stubs


REAL_MODEL, STUB_MODELS = served_models()

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
            r = httpx.post(f"{gw.base_url}/admin/unload/{REAL_MODEL}", timeout=30.0)
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


def _legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or json.dumps(labels)


def fetch(prom: Prometheus, panel: dict[str, Any], start: float, end: float, step: float, rate: str) -> list[Series]:
    out = []
    for target in panel.get("targets", []):
        expr = grafana_macros(target["expr"], rate_interval=rate, range_=f"{int(end - start)}s")
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


# --- main --------------------------------------------------------------------------


def collect(args: argparse.Namespace, dashboard: dict[str, Any]) -> dict[str, Any]:
    """Serves, drives traffic, lets Prometheus scrape, and runs every panel's queries."""
    with tempfile.TemporaryDirectory(prefix="mia-dashboard-") as tmp:
        tmp_dir = Path(tmp)
        with (
            serve_gateway(SETTINGS, tmp_dir / "gateway.log") as gw,
            run_prometheus(f"127.0.0.1:{gw.port}", tmp_dir / "prom") as prom,
        ):
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
