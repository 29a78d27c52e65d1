"""The model manager (ADR-0015): loads models, falls back to the stub, switches heavy
models, unloads idle ones. `ModelLoaded` always precedes any generation of a model."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from pipelines.config import ModelConfig
from pipelines.errors import ModelUnavailable
from pipelines.events import EventBus, ModelLoaded, ModelLoadFailed, ModelUnloaded
from pipelines.providers.base import LoadFailure, Provider
from pipelines.providers.stub import StubProvider

__all__ = ["InUse", "ModelEntry", "ModelManager", "ModelStatus", "ProviderFactory"]

ModelStatus = Literal["unloaded", "loading", "loaded"]

_log = logging.getLogger(__name__)

ProviderFactory = Callable[[ModelConfig], Provider]


@dataclass
class ModelEntry:
    """One configured model id and the provider currently serving it."""

    config: ModelConfig
    provider: Provider
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_use: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    last_used: float = field(default_factory=time.monotonic)
    load_failure: LoadFailure | None = None
    status: ModelStatus = "unloaded"
    """Whether `provider` is loaded: the manager's to set, and no one else's."""
    loading: asyncio.Task[None] | None = None
    """The load under way: a task of its own, so a request that stops waiting for it
    (`load_timeout`) does not cancel it."""
    loaded_once: bool = False
    """Loaded (or served by the stub) at least once: an unload since then (idle, switch,
    explicit) does not make the gateway unready, as the next request loads it again."""

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def physical(self) -> bool:
        """Holds real weights in memory (stubs and remote upstreams do not)."""
        return self.provider.holds_weights and self.status == "loaded"


class ModelManager:
    """Owns every model entry; the router looks ids up here."""

    def __init__(
        self,
        configs: Iterable[ModelConfig],
        bus: EventBus,
        factory: ProviderFactory,
        *,
        load_timeout: float = 120.0,
    ) -> None:
        self._bus = bus
        self._factory = factory
        self._load_timeout = load_timeout
        self._entries: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}
        self._switch_lock = asyncio.Lock()
        for config in configs:
            self._entries[config.id] = ModelEntry(config=config, provider=factory(config))
            for alias in config.aliases:
                self._aliases[alias] = config.id

    # -- lookup -----------------------------------------------------------------

    def canonical_id(self, model_id: str) -> str | None:
        if model_id in self._entries:
            return model_id
        return self._aliases.get(model_id)

    def get(self, model_id: str) -> ModelEntry | None:
        cid = self.canonical_id(model_id)
        return self._entries[cid] if cid is not None else None

    @property
    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    @property
    def configs(self) -> list[ModelConfig]:
        return [e.config for e in self._entries.values()]

    @property
    def ready(self) -> bool:
        """Every model meant to be loaded at start-up has been (a stub counts)."""
        return all(e.loaded_once for e in self._entries.values() if e.config.preload)

    # -- loading ----------------------------------------------------------------

    async def load_all(self) -> None:
        for entry in self._entries.values():
            if entry.config.preload and entry.status != "loaded":
                await self._loading(entry)  # no request waits on these: as long as the load takes

    async def ensure_loaded(self, entry: ModelEntry) -> Provider:
        if entry.status == "loaded":
            return entry.provider
        try:
            async with asyncio.timeout(self._load_timeout):
                await asyncio.shield(self._loading(entry))
        except TimeoutError:
            raise ModelUnavailable(
                f"Model '{entry.config.id}' is still loading; try again shortly.", retry_after=5.0
            ) from None
        return entry.provider

    def _loading(self, entry: ModelEntry) -> asyncio.Task[None]:
        """The entry's load under way, started if none is."""
        if entry.loading is None or entry.loading.done():
            entry.loading = asyncio.ensure_future(self._load_locked(entry))
        return entry.loading

    async def _load_locked(self, entry: ModelEntry) -> None:
        async with entry.lock:
            if entry.status != "loaded":
                await self._load(entry)

    async def _load(self, entry: ModelEntry) -> None:
        config = entry.config
        provider = entry.provider
        if provider.holds_weights:
            await self._make_room_for(entry)
        entry.status = "loading"
        started = time.perf_counter()
        try:
            await provider.load()
        except BaseException as exc:
            entry.status = "unloaded"
            if not isinstance(exc, LoadFailure):
                raise
            failure = exc
            _log.warning("model %s failed to load (%s): %s", config.id, failure.reason, failure.detail)
            self._bus.emit(
                ModelLoadFailed(
                    model_id=config.id, provider=provider.kind, reason=failure.reason, detail=failure.detail
                )
            )
            entry.load_failure = failure
            provider = StubProvider(config, reason=f"{failure.reason}: {failure.detail}")
            entry.provider = provider
            await provider.load()
        entry.status = "loaded"
        entry.loaded_once = True
        entry.last_used = time.monotonic()  # idle from now: a load slower than keep_alive is not undone at once
        metadata: dict[str, object] = {"stub": provider.stub}
        if provider.stub:
            metadata["stub_reason"] = provider.stub_reason
        self._bus.emit(
            ModelLoaded(
                model_id=config.id,
                provider=provider.kind,
                role=config.role,
                load_seconds=time.perf_counter() - started,
                metadata=metadata,
            )
        )

    async def _make_room_for(self, entry: ModelEntry) -> None:
        """Heavy models exclude each other; a lightweight one also displaces a heavy one."""
        async with self._switch_lock:
            for other in self._entries.values():
                if other is entry or not other.physical or not other.config.is_heavy:
                    continue
                reason = "switch_heavy" if entry.config.is_heavy else "switch_heavy_to_lightweight"
                await self._unload(other, reason)

    async def unload(self, model_id: str, reason: str = "explicit_unload") -> bool:
        entry = self.get(model_id)
        if entry is None or entry.status != "loaded":
            return False
        async with entry.lock:
            await self._unload(entry, reason)
        return True

    async def _unload(self, entry: ModelEntry, reason: str) -> None:
        await entry.idle.wait()  # let running generations finish first
        await entry.provider.unload()
        entry.status = "unloaded"
        self._bus.emit(ModelUnloaded(model_id=entry.config.id, reason=reason))

    async def shutdown(self) -> None:
        for entry in self._entries.values():
            if entry.status == "loaded":
                await entry.provider.unload()
                entry.status = "unloaded"
                self._bus.emit(ModelUnloaded(model_id=entry.config.id, reason="shutdown"))

    # -- use --------------------------------------------------------------------

    def using(self, entry: ModelEntry) -> InUse:
        """Marks the entry busy so that switching waits for its generation to end:
        `async with manager.using(entry) as provider`."""
        return InUse(self, entry)

    async def unload_idle(self, now: float | None = None) -> list[str]:
        """Unloads loaded real models idle past their keep-alive; returns their ids."""
        now = time.monotonic() if now is None else now
        done = []
        for entry in self._entries.values():
            keep = entry.config.keep_alive_seconds
            if keep is None or not entry.physical or entry.in_use:
                continue
            if now - entry.last_used >= keep:
                async with entry.lock:
                    await self._unload(entry, "idle")
                done.append(entry.config.id)
        return done


class InUse:
    """`ModelManager.using`: the entry's provider, loaded, held busy while the block runs.
    A class rather than a generator-based context manager: it is entered on every request."""

    __slots__ = ("_entry", "_manager")

    def __init__(self, manager: ModelManager, entry: ModelEntry) -> None:
        self._manager = manager
        self._entry = entry

    async def __aenter__(self) -> Provider:
        entry = self._entry
        provider = await self._manager.ensure_loaded(entry)
        entry.in_use += 1
        entry.idle.clear()
        return provider

    async def __aexit__(self, *exc: object) -> None:
        entry = self._entry
        entry.in_use -= 1
        entry.last_used = time.monotonic()
        if entry.in_use == 0:
            entry.idle.set()
