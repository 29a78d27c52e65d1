"""`serve --workers N` on a stub model: requests/s at 1 and 2 workers, alternating in one
run, and whether `/metrics` (summed across workers) counts every request wrk sent.

    .venv/bin/python bench/workers.py            # about 2 minutes

`wrk -t1 -c32` non-stream POSTs (the load generator shares the machine's cores with the
gateway's processes, as it would on a 2-core box), `--rounds` of each worker count,
alternating; the figure is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from processes import serve_gateway
from stub_overhead import WRK_SCRIPT, wrk
from workload import STUB_SETTINGS


def _served_requests(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mia_requests_total{") and 'endpoint="/v1/chat/completions"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[float]] = {1: [], 2: []}
    counted: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mia-workers-") as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "stub.toml"
        config.write_text(STUB_SETTINGS)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT % "")
        for round_ in range(args.rounds):
            for workers in (1, 2):
                log = tmp / f"gw-{workers}-{round_}.log"
                with serve_gateway(config, log, extra=["--workers", str(workers)]) as gw:
                    url = f"{gw.api_url}/chat/completions"
                    wrk(url, script, 2)  # warm-up
                    time.sleep(0.5)
                    before = _served_requests(gw.base_url)
                    run = wrk(url, script, args.seconds)
                    after = _served_requests(gw.base_url)
                results[workers].append(run["rps"] or 0.0)
                counted.append(
                    f"{workers} worker(s): wrk sent {run['requests']}, /metrics counted {after - before:.0f}"
                )
                print(f"round {round_ + 1}, {workers} worker(s): {run['rps']:,.0f} requests/s", flush=True)
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"median: 1 worker {one:,.0f} requests/s, 2 workers {two:,.0f} ({two / one:.2f}x)")
    print("\n".join(counted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
