"""The `mia-gateway` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from app.settings import Settings, SettingsError, load_settings
from pipelines.config import LlamaModelConfig

if TYPE_CHECKING:
    from pipelines.manager import ProviderFactory

__all__ = ["main", "run_server"]

_DESCRIPTION = """\
mia-gateway: an OpenAI-compatible API gateway for local and remote language models.
Point an OpenAI SDK client's base_url at http://HOST:PORT/v1.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mia-gateway", description=_DESCRIPTION)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="serve the API",
        description="Serve the OpenAI-compatible API. Without --config (or MIA_CONFIG) the embedded default "
        "settings are used: SmolLM2-135M-Instruct and Gemma 3 270M (real, from their PyPI packages) and "
        "gpt-oss-20b (real if its GGUF is found, otherwise the deterministic stub, flagged stub: true).",
    )
    serve.add_argument("--config", metavar="FILE", help="settings TOML file (default: $MIA_CONFIG, else embedded)")
    serve.add_argument("--host", help="address to listen on (overrides [server].host and MIA_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides [server].port and MIA_PORT)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level")
    serve.add_argument("--log-format", choices=["text", "json"], help="log line format")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes sharing the port (default 1); more than one only for settings with no "
        "in-process model (stub, replay and upstream models)",
    )

    check = sub.add_parser("check-config", help="validate a settings file and print the result")
    check.add_argument("--config", metavar="FILE")

    models = sub.add_parser("models", help="model maintenance")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    verify = msub.add_parser("verify", help="re-hash every model file and compare with its sha256")
    verify.add_argument("--config", metavar="FILE")

    sub.add_parser("openapi", help="print the OpenAPI document")
    return p


def _settings(config: str | None) -> Settings:
    return load_settings(config or os.environ.get("MIA_CONFIG") or None)


def _serve(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.workers import check_workers, metrics_folder, supervise

    settings = _serve_settings(args)
    check_workers(settings, args.workers)
    if args.workers == 1:
        run_server(settings)
        return 0
    # Before anything imports prometheus-client: its multiprocess mode is chosen at import.
    folder = metrics_folder()
    server = settings.server
    configure_logging(server.log_level, server.log_format)
    return supervise(
        host=server.host,
        port=server.port,
        workers=args.workers,
        run_worker=lambda index, sock: run_server(settings, sock=sock, metrics_dir=folder),
        metrics_dir=folder,
    )


def _serve_settings(args: argparse.Namespace) -> Settings:
    settings = _settings(args.config)
    overrides: dict[str, Any] = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("log_level", args.log_level),
            ("log_format", args.log_format),
        )
        if v is not None
    }
    if overrides:
        server = msgspec.structs.replace(settings.server, **overrides)
        settings = msgspec.structs.replace(settings, server=server)
    return settings


def run_server(
    settings: Settings,
    *,
    sock: socket.socket | None = None,
    metrics_dir: Path | None = None,
    provider_factory: ProviderFactory | None = None,
) -> None:
    """Builds the gateway and serves it until a signal: on `host:port`, or on `sock` (a
    worker of `--workers N`, whose metrics are summed across workers from `metrics_dir`).
    `provider_factory` replaces the providers the settings name (benchmarks)."""
    import uvicorn

    from app.factory import create_app
    from app.gateway import build_gateway
    from app.http_protocol import bounded_http_protocol, fit_open_files_limit
    from app.logs import configure_logging, log_events
    from app.metrics import install_metrics, multiprocess_registry

    server = settings.server
    lines = configure_logging(server.log_level, server.log_format)
    if (problem := fit_open_files_limit(server.max_connections)) is not None:
        logging.getLogger("mia.serve").warning("%s: %s", settings.source, problem)
    gateway = build_gateway(settings, provider_factory=provider_factory)
    install_metrics(gateway.registry, gateway.bus, gateway.settings.models)
    if metrics_dir is not None:
        gateway.exposed = multiprocess_registry(metrics_dir)
    log_events(gateway.bus, lines=lines)
    app = create_app(gateway)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Drain at once, on the loop: queued requests get 503 now, running generations
            # have `shutdown_grace` seconds, then end with `reason=shutdown` (a clean error
            # event on a stream) -- all before uvicorn's own timeout cancels connections.
            if not gateway.draining:
                gateway.draining = True
                loop = asyncio.get_event_loop()
                loop.call_soon_threadsafe(self._begin_drain, loop)
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signals it caught once it has shut down (status -15,
            # and the last log lines lost with the process); a drained gateway exits 0.
            self._captured_signals.clear()

        def _begin_drain(self, loop: asyncio.AbstractEventLoop) -> None:
            gateway.admission.close("The gateway is shutting down.")
            self._drain_task = loop.create_task(gateway.service.drain(server.shutdown_grace))

    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # uvicorn's own backstop, past the drain's grace: when it fires it cancels what is
        # left and answers a plain-text 500. 5 s was reached on a loaded 2-core machine
        # before a cut-off generation's 503 went out; the margin costs nothing otherwise.
        timeout_graceful_shutdown=int(server.shutdown_grace) + 15,
        loop="asyncio",
        # Nothing reads the client's address, so uvicorn's X-Forwarded-For layer (an ASGI
        # wrapper on every request) has nothing to do.
        proxy_headers=False,
        http=bounded_http_protocol(
            header_timeout=server.header_timeout,
            max_header_bytes=server.max_header_bytes,
            max_connections=server.max_connections,
            bus=gateway.bus,
        ),
    )
    _Server(config).run(sockets=None if sock is None else [sock])
    lines.flush()  # the lines of the loop's last turn, whose write was never scheduled


def _check_config(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    print(f"{settings.source}: ok ({len(settings.models)} models)")
    for m in settings.models:
        print(f"  {m.id}: {m.provider}, {'embedding' if m.embedding else m.format}, role {m.role}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pipelines.model_files import resolve_model_path, sha256_file
    from pipelines.providers.base import LoadFailure

    settings = _settings(args.config)
    cache = Path(settings.server.cache_dir).expanduser()
    bad = 0
    for m in settings.models:
        if not isinstance(m, LlamaModelConfig):
            continue
        try:
            path = resolve_model_path(m, cache_dir=cache)
        except LoadFailure as exc:
            print(f"{m.id}: {exc.reason}: {exc.detail}")
            bad += 1
            continue

        def progress(done: int, total: int, name: str = m.id) -> None:
            width = 30
            filled = int(width * done / total) if total else width
            sys.stderr.write(f"\r{name}: [{'#' * filled}{'.' * (width - filled)}] {done * 100 // max(total, 1)}%")
            sys.stderr.flush()

        digest = sha256_file(path, progress)
        sys.stderr.write("\n")
        if m.sha256 is None:
            print(f"{m.id}: {digest} (no sha256 configured)")
        elif digest == m.sha256.lower():
            print(f"{m.id}: ok")
        else:
            print(f"{m.id}: MISMATCH expected {m.sha256}, got {digest}")
            bad += 1
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "models" and args.models_command == "verify":
            return _verify(args)
        if args.command == "openapi":
            from app.openapi import build_openapi

            sys.stdout.write(msgspec.json.format(msgspec.json.encode(build_openapi()), indent=2).decode() + "\n")
            return 0
    except SettingsError as exc:
        print(f"mia-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
