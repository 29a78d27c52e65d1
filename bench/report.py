"""What bench/compare.py reports: the machine and its load, the targets (thresholds) met or
missed, and the tables printed on stdout."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["machine", "print_report", "uptime", "verdicts"]


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "kernel": platform.release()}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def verdicts(
    llm: dict[str, Any], stub: dict[str, Any], ceiling: dict[str, Any], rounds: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each target of issues 8 and 15: the figure, the bound, met or not (None: not measured)."""
    out: list[dict[str, Any]] = []

    def get(system: str, clients: int, key: str) -> float | None:
        value = llm.get(system, {}).get(str(clients), {}).get(key)
        return float(value) if isinstance(value, int | float) else None

    def add(name: str, value: float | None, bound: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "bound": bound, "met": ok})

    gw, direct, server = "gateway-slots4", "direct", "llama-server"
    g1, d1 = get(gw, 1, "decode_tps"), get(direct, 1, "decode_tps")
    ratio = g1 / d1 if g1 and d1 else None
    add("1 client: gateway decode / direct", ratio, ">= 0.97", None if ratio is None else ratio >= 0.97)
    gt, dt = get(gw, 1, "ttft_p50_ms"), get(direct, 1, "ttft_p50_ms")
    over = gt - dt if gt is not None and dt is not None else None
    add("1 client: TTFT p50 overhead vs direct (ms)", over, "< 5", None if over is None else over < 5)
    g4, s4 = get(gw, 4, "decode_tps"), get(server, 4, "decode_tps")
    ratio = g4 / s4 if g4 and s4 else None
    add("4 clients: gateway decode / llama-cpp-python server", ratio, ">= 1.5", None if ratio is None else ratio >= 1.5)
    ratio = g4 / g1 if g4 and g1 else None
    add("4 clients: gateway decode / its own 1-client", ratio, ">= 1.3", None if ratio is None else ratio >= 1.3)
    gp, sp = get(gw, 4, "ttft_p95_ms"), get(server, 4, "ttft_p95_ms")
    ratio = gp / sp if gp is not None and sp else None
    add("4 clients: TTFT p95 gateway / server", ratio, "<= 0.5", None if ratio is None else ratio <= 0.5)
    for n, bound in ((1, 0.95), (4, 1.0)):
        g, c = get(gw, n, "decode_tps"), get("llama.cpp-server", n, "decode_tps")
        ratio = g / c if g and c else None
        add(f"{n} client(s): gateway decode / llama.cpp-server", ratio, f">= {bound}", _at_least(ratio, bound))
        # On a shared machine one slow burst moves the merged figures: the median round too.
        each = [r[gw].get(str(n)) for r in rounds if gw in r]
        ratio = statistics.median(each) if each and None not in each else None
        add(f"{n} client(s): the same, median of the rounds", ratio, f">= {bound}", _at_least(ratio, bound))
    c4 = ceiling.get("4", {}).get("decode_tps")
    ratio = g4 / c4 if g4 and c4 else None
    add("4 clients: gateway decode / llama-batched-bench 4 seq", ratio, ">= 0.8", _at_least(ratio, 0.8))
    each = [r[f"{gw} / batched-bench"].get("4") for r in rounds if f"{gw} / batched-bench" in r]
    ratio = statistics.median(each) if each and None not in each else None
    add("4 clients: the same, median of the rounds", ratio, ">= 0.8", _at_least(ratio, 0.8))
    s4c = get("llama.cpp-server", 4, "decode_tps")
    ratio = s4c / c4 if s4c and c4 else None
    add("4 clients: llama.cpp-server / llama-batched-bench 4 seq", ratio, "(reference)", None)
    ns = stub.get("gateway_non_stream", {})
    rps, p99 = ns.get("rps"), ns.get("p99_ms")
    add("stub non-stream requests/s (32 conn)", rps, ">= 2000", None if rps is None else rps >= 2000)
    add("stub non-stream p99 (ms)", p99, "< 20", None if p99 is None else p99 < 20)
    bare = stub.get("bare_non_stream", {}).get("rps")
    ratio = rps / bare if rps and bare else None
    add("stub non-stream / bare Litestar (FACTS.md)", ratio, ">= 0.5", None if ratio is None else ratio >= 0.5)
    rss = stub.get("gateway_idle_rss_mb")
    add("idle RSS, stub models only (MB)", rss, "< 120", None if rss is None else rss < 120)
    return out


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    print()
    print(f"model: {report['config']['model']}  max_tokens: {report['config']['max_tokens']}  temperature 0")
    print(f"load before: {report['load_before']}")
    print(f"load after:  {report['load_after']}")
    head = (
        "system",
        "clients",
        "decode tok/s",
        "output tok/s",
        "TTFT p50",
        "TTFT p95",
        "ITL p50",
        "ITL p95",
        "CPU ms/tok",
        "errors",
    )
    rows = [head]
    for system, levels in report["llm"].items():
        for clients, s in levels.items():
            if not clients.isdigit():
                continue
            rows.append(
                (
                    system,
                    clients,
                    _fmt(s["decode_tps"]),
                    _fmt(s["output_tps"]),
                    _fmt(s["ttft_p50_ms"]),
                    _fmt(s["ttft_p95_ms"]),
                    _fmt(s["itl_p50_ms"]),
                    _fmt(s["itl_p95_ms"]),
                    _fmt(s.get("cpu_ms_per_token"), 2),
                    f"{s['errors']}/{s['requests']}",
                )
            )
    _table(rows, "latencies in ms; CPU ms/tok: the server process's CPU time per streamed token (peer rounds)")
    ceiling = report.get("ceiling") or {}
    if ceiling:
        rows = [("llama-batched-bench, 32-token prompts, 64 generated", "sequences", "decode tok/s")]
        rows += [("", n, _fmt(ceiling[n]["decode_tps"])) for n in ("1", "4", "8") if n in ceiling]
        _table(rows, ceiling["command"])
    rounds = report.get("peer_rounds") or []
    if rounds:
        levels = sorted({n for by_system in rounds for ratios in by_system.values() for n in ratios}, key=int)
        rows = [("ratio", "round", *(f"{n} clients" for n in levels))]
        for i, by_system in enumerate(rounds, 1):
            for name, ratios in by_system.items():
                label = name if "/" in name else f"{name} / llama.cpp-server"
                rows.append((label, str(i), *(_fmt(ratios.get(n), 2) for n in levels)))
        _table(rows, "decode tokens/s ratios within each round (rounds alternate the systems)")
    stub = report["stub"]
    if stub:
        rows = [("stub, 32 connections", "requests/s", "p50 ms", "p99 ms", "non-2xx", "socket errors")]
        for key in ("gateway_non_stream", "bare_non_stream", "gateway_stream", "bare_stream"):
            s = stub.get(key)
            if s:
                rows.append(
                    (
                        key,
                        _fmt(s["rps"], 0),
                        _fmt(s["p50_ms"], 2),
                        _fmt(s["p99_ms"], 2),
                        s["non_2xx"],
                        s["socket_errors"],
                    )
                )
        _table(rows, f"gateway idle RSS: {_fmt(stub.get('gateway_idle_rss_mb'))} MB")
    rows = [("target", "value", "bound", "met")]
    for v in report["targets"]:
        rows.append((v["target"], _fmt(v["value"], 2), v["bound"], {True: "yes", False: "NO", None: "-"}[v["met"]]))
    _table(rows, "targets (issues 8 and 15)")


def _table(rows: list[tuple[Any, ...]], caption: str) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    print()
    for k, row in enumerate(rows):
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({caption})")
