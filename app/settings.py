"""Settings: one TOML file decoded into Structs, environment overrides, and an embedded
default. A mistake stops start-up with a message naming the key and the file."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from compat.responses_store import StorageSettings
from pipelines.assembly import GenerationLimits
from pipelines.config import AnyModelConfig, Preset, with_provider

__all__ = ["DEFAULT_SETTINGS_NAME", "ServerSettings", "Settings", "SettingsError", "load_settings"]

DEFAULT_SETTINGS_NAME = "<embedded default>"


class SettingsError(Exception):
    """A settings problem, already phrased for the operator."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class ServerSettings(GenerationLimits, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`[server]`: how the gateway listens and protects itself (and, inherited, the limits
    of the generation side). Env: `MIA_<KEY>`."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    reasoning_fields: Literal["both", "reasoning_content", "reasoning"] = "both"
    """Which field(s) carry Harmony's analysis channel on the wire."""
    shutdown_grace: Annotated[float, Meta(ge=0)] = 10.0
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 4 * 1024 * 1024
    body_timeout: Annotated[float, Meta(gt=0)] = 30.0
    """Seconds a client may take to send its request body; past it, 408 and the connection goes."""
    header_timeout: Annotated[float, Meta(gt=0)] = 10.0
    """Seconds a connection has, from its opening or a request's first byte, to send the
    request line and headers; past it, 408 (or a close, if nothing came) and the connection goes."""
    max_header_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024
    """The request line and headers of one request; past it, 431 and the connection goes."""
    max_connections: Annotated[int, Meta(ge=1)] = 2048
    """Open connections; while there are more, a request that arrives gets 503 and its connection goes."""
    max_messages: Annotated[int, Meta(ge=1)] = 2048
    max_prompt_chars: Annotated[int, Meta(ge=1)] = 1_000_000
    max_stop: Annotated[int, Meta(ge=0)] = 16
    max_stop_chars: Annotated[int, Meta(ge=1)] = 512
    max_tools: Annotated[int, Meta(ge=0)] = 128
    max_embedding_inputs: Annotated[int, Meta(ge=1)] = 2048
    """Inputs one embeddings request may hold (OpenAI's bound); their characters and token
    ids count towards `max_prompt_chars` together."""
    max_choices: Annotated[int, Meta(ge=1, le=128)] = 16
    """The most choices (`n`) one request may ask for; a local model also needs as many slots."""
    max_tool_schema_bytes: Annotated[int, Meta(ge=64)] = 65536
    hosted_tools: Literal["ignore", "refuse"] = "ignore"
    """Responses requests naming hosted tools the gateway cannot run (web_search,
    code_interpreter, ...): leave them out of the prompt and say so (header, event, metric),
    or refuse the request with a 400 naming the tool."""
    reasoning_key: Annotated[str, Meta(min_length=32)] | None = None
    """The secret that Responses' `reasoning.encrypted_content` is sealed with (any string of
    32 characters or more, e.g. `openssl rand -hex 32`; replicas that continue each other's
    conversations share it). Unset: a random key per process, so sealed reasoning opens only
    in the process that sealed it (elsewhere the reasoning is left out, never an error)."""
    api_keys: list[str] = []
    api_keys_file: str | None = None
    metrics_require_key: bool = False


class Settings(_Strict, frozen=True, kw_only=True):
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    models: list[AnyModelConfig] = []
    presets: dict[str, Preset] = {}
    source: str = DEFAULT_SETTINGS_NAME
    """Where these settings came from (a path, or the embedded default)."""


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def _explain(exc: msgspec.ValidationError, source: str, raw: Mapping[str, Any]) -> SettingsError:
    m = _AT.match(str(exc))
    msg, path = (m.group("msg"), m.group("path") or "") if m else (str(exc), "")
    key = path.lstrip(".")
    unknown = _UNKNOWN.match(msg)
    missing = _MISSING.match(msg)
    if unknown:
        key = f"{key}.{unknown.group('field')}" if key else unknown.group("field")
        msg = "unknown key"
        if key.startswith("models["):
            msg += " (or a key of another provider's: see `provider`)"
    elif missing:
        key = f"{key}.{missing.group('field')}" if key else missing.group("field")
        msg = "required"
    # msgspec writes dict keys as `[...]`: find the preset that fails, to name it.
    if key.startswith("presets[...]"):
        for name, table in (raw.get("presets") or {}).items():
            try:
                msgspec.convert(table, Preset)
            except msgspec.ValidationError:
                key = f"presets.{name}" + key.removeprefix("presets[...]")
                break
    # Say which model an index points at, so the operator finds it in the file.
    mm = re.match(r"models\[(\d+)\]", key)
    if mm:
        models = raw.get("models") or []
        i = int(mm.group(1))
        if i < len(models) and isinstance(models[i], dict) and "id" in models[i]:
            key += f" (model '{models[i]['id']}')"
    return SettingsError(f"{source}: invalid setting '{key or '<top level>'}': {msg}")


def _env_overrides(env: Mapping[str, str], fields: tuple[str, ...], prefix: str = "MIA_") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = env.get(f"{prefix}{name.upper()}")
        if value is None:
            continue
        if name == "api_keys":
            out[name] = [k.strip() for k in value.split(",") if k.strip()]
        else:
            out[name] = value
    return out


def _check(settings: Settings) -> None:
    url = settings.storage.url
    if url and not settings.storage.postgres:
        raise SettingsError(
            f"{settings.source}: invalid setting 'storage.url': '{url.split(':')[0]}:' is not postgresql:// "
            "(leave it empty for SQLite in storage.data_dir)"
        )
    ids: set[str] = set()
    for m in settings.models:
        for name in (m.id, *m.aliases):
            if name in ids:
                raise SettingsError(f"{settings.source}: invalid setting 'models': id or alias '{name}' appears twice")
            ids.add(name)
    for m in settings.models:
        for fb in m.fallbacks:
            if fb not in ids:
                raise SettingsError(
                    f"{settings.source}: invalid setting 'models.fallbacks' (model '{m.id}'): unknown model '{fb}'"
                )


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Reads `path` (or the embedded default), applies `MIA_*` overrides, validates."""
    env = os.environ if env is None else env
    if path is None:
        source = DEFAULT_SETTINGS_NAME
        text = resources.files("app").joinpath("default_settings.toml").read_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"{source}: cannot read settings file: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise SettingsError(f"{source}: settings file is not UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}: not valid TOML: {exc}") from None
    if "source" in raw:
        raise SettingsError(f"{source}: invalid setting 'source': unknown key")
    models = raw.get("models")
    if isinstance(models, list):
        raw = {**raw, "models": [with_provider(m) if isinstance(m, dict) else m for m in models]}
    try:
        settings = msgspec.convert({**raw, "source": source}, Settings)
    except msgspec.ValidationError as exc:
        raise _explain(exc, source, raw) from None
    server = _overridden(settings.server, _env_overrides(env, ServerSettings.__struct_fields__), "MIA_")
    storage = _overridden(
        settings.storage, _env_overrides(env, StorageSettings.__struct_fields__, "MIA_STORAGE_"), "MIA_STORAGE_"
    )
    settings = msgspec.structs.replace(settings, server=server, storage=storage)
    _check(settings)
    return settings


S = TypeVar("S", ServerSettings, StorageSettings)


def _overridden(section: S, overrides: dict[str, Any], prefix: str) -> S:
    """`section` with the environment's `overrides` (`prefix` + KEY) applied."""
    if not overrides:
        return section
    try:
        return msgspec.convert({**msgspec.to_builtins(section), **overrides}, type(section), strict=False)
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        key = (m.group("path") or "").lstrip(".") if m else ""
        msg = m.group("msg") if m else str(exc)
        raise SettingsError(f"environment: invalid value for {prefix}{key.upper()}: {msg}") from None
