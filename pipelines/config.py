"""Model passports and presets: what a model is and how it samples by default.

Decoded from the settings TOML with unknown keys forbidden, so a typo (or a key of
another provider's) stops start-up instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, TypeAlias

import msgspec
from msgspec import Meta

__all__ = [
    "AnyModelConfig",
    "LlamaModelConfig",
    "ModelConfig",
    "Preset",
    "ReplayModelConfig",
    "SamplingDefaults",
    "StubModelConfig",
    "UpstreamConfig",
    "UpstreamModelConfig",
    "model_config",
    "with_provider",
]

Role = Literal["primary", "lightweight", "judge"]
Format = Literal["harmony", "chat"]
ProviderKind = Literal["stub", "llama_cpp", "replay", "openai_http"]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Settings structs reject unknown keys: a misspelt key is a start-up error."""


class SamplingDefaults(_Strict, frozen=True, kw_only=True):
    """A model's sampling defaults (the lowest layer of the merge)."""

    temperature: Annotated[float, Meta(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Meta(gt=0, le=1)] = 1.0
    top_k: Annotated[int, Meta(ge=0)] = 0
    min_p: Annotated[float, Meta(ge=0, le=1)] = 0.0
    presence_penalty: Annotated[float, Meta(ge=-2, le=2)] = 0.0
    frequency_penalty: Annotated[float, Meta(ge=-2, le=2)] = 0.0
    repeat_penalty: Annotated[float, Meta(gt=0)] = 1.0
    seed: int | None = None
    reasoning_effort: Literal["low", "medium", "high"] = "medium"


class Preset(_Strict, frozen=True, kw_only=True):
    """A named sampling table a request selects with the `preset` extension field."""

    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    presence_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None
    repeat_penalty: Annotated[float, Meta(gt=0)] | None = None
    seed: int | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None


class UpstreamConfig(_Strict, frozen=True, kw_only=True):
    """One OpenAI-compatible backend of an `openai_http` model."""

    base_url: str
    model: str | None = None
    api_key_env: str | None = None


class ModelConfig(_Strict, frozen=True, kw_only=True, tag_field="provider"):
    """A model's passport: what every model has, whatever serves it.

    `provider` (the TOML key) selects the subclass, and so which further keys the model
    may have: a key of another provider's is an unknown key, a start-up error. The keys a
    stub needs are here, since any model falls back to the stub when it cannot load.
    """

    id: str
    aliases: list[str] = []
    role: Role = "lightweight"
    format: Format = "chat"
    heavy: bool | None = None
    """Heavy models unload each other; default: primary models are heavy."""
    max_output_tokens: Annotated[int, Meta(ge=1)] = 1024
    context_length: Annotated[int, Meta(ge=16)] = 2048
    slots: Annotated[int, Meta(ge=1, le=64)] = 1
    """Generations at once: sequences of a local model, requests per upstream server."""
    tools: bool = False
    """Chat models: whether the chat template supports tool calls."""
    keep_alive_seconds: Annotated[float, Meta(gt=0)] | None = None
    preload: bool = True
    strip_echo: bool = False
    """Drop a leading repeat of the last user turn from the answer."""
    sampling: SamplingDefaults = SamplingDefaults()
    stub_words: Annotated[int, Meta(ge=1, le=4096)] = 24
    """How many words a stub answer has (before the output cap)."""
    fallbacks: list[str] = []
    embedding: bool = False
    """An embedding model: it serves `/v1/embeddings`, and chat or responses requests
    naming it are a 400 (as embedding requests naming any other model are)."""
    matryoshka: bool = False
    """Embedding models: trained so that a prefix of a vector is an embedding too
    (Matryoshka): a request's `dimensions` shortens vectors (then normalised again).
    Without it, `dimensions` other than the model's own length is a 400."""
    stub_dimensions: Annotated[int, Meta(ge=1, le=8192)] = 384
    """The length of the vectors the stub answers an embedding model with."""

    @property
    def provider(self) -> ProviderKind:
        """The provider that serves the model (its `provider` key)."""
        tag: ProviderKind = type(self).__struct_config__.tag  # type: ignore[assignment]
        return tag

    @property
    def is_heavy(self) -> bool:
        return self.heavy if self.heavy is not None else self.role == "primary"

    @property
    def chained(self) -> bool:
        """A request may move on to another attempt before its first piece (another
        upstream server, or a fallback model)."""
        return bool(self.fallbacks)


class StubModelConfig(ModelConfig, tag="stub", frozen=True, kw_only=True):
    """A model served by the deterministic stub on purpose."""


class LlamaModelConfig(ModelConfig, tag="llama_cpp", frozen=True, kw_only=True):
    """A local GGUF run in-process by llama.cpp.

    `path` is a file path, `package:DIST:RELPATH` (a file inside an installed
    distribution, found through its metadata) or `assemble:MODULE` (a package whose
    `assemble()` writes the file into the cache folder).
    """

    path: str | None = None
    path_env: str | None = None
    """An environment variable that, when set, overrides `path`."""
    sha256: str | None = None
    verify_checksum: bool = True
    threads: Annotated[int, Meta(ge=1)] | None = None
    batch_size: Annotated[int, Meta(ge=1)] = 512
    flash_attention: bool = False
    """llama.cpp's flash attention: 10-20 % faster decoding on CPU (llama-server turns it on
    where it can), but its numerics depend on how a prompt was split between decode calls,
    so a cached prefix or a batched neighbour can change greedy output. Off, every cached
    prefix, chunked prompt and batched sequence reproduces a fresh single-sequence run."""
    prompt_cache_mib: Annotated[int, Meta(ge=0, le=1 << 20)] = 512
    """Host memory (MiB) for slot states kept after their slot was taken for another
    prompt, given back when a prompt starts the same way (0: none; least recently used go
    first). SmolLM2-135M takes about 23 KB per token."""
    n_gpu_layers: Annotated[int, Meta(ge=-1)] | None = None
    """Layers offloaded to a GPU (-1: all); default all where llama.cpp has a GPU backend,
    none otherwise, whatever `slots`."""
    main_gpu: Annotated[int, Meta(ge=0)] = 0
    split_mode: Literal["none", "layer", "row"] = "layer"
    """How several GPUs share the model: by layers, by rows of each tensor, or not at all."""
    tensor_split: Annotated[list[Annotated[float, Meta(ge=0)]], Meta(min_length=1, max_length=16)] | None = None
    """The share of each GPU (proportions; at least one above 0)."""

    def __post_init__(self) -> None:
        if self.tensor_split is not None and not any(self.tensor_split):
            raise ValueError("tensor_split needs at least one share above 0")


class ReplayModelConfig(ModelConfig, tag="replay", frozen=True, kw_only=True):
    """A recorded completion played back (tests and demos of the whole path)."""

    replay_file: str
    replay_chunk_bytes: Annotated[int, Meta(ge=1)] = 3
    replay_after_tools: list[str] = []
    """A scripted agent: the files replayed once the prompt holds 1, 2, ... tool results
    (the last one for any more), `replay_file` while it holds none. So one model can call
    a tool, then answer from its result."""


class UpstreamModelConfig(ModelConfig, tag="openai_http", frozen=True, kw_only=True):
    """A model served by OpenAI-compatible backends (vLLM, llama.cpp's server, another gateway)."""

    upstreams: Annotated[list[UpstreamConfig], Meta(min_length=1)]
    connect_timeout: Annotated[float, Meta(gt=0)] = 5.0
    read_timeout: Annotated[float, Meta(gt=0)] = 60.0
    eject_after: Annotated[int, Meta(ge=1)] = 3
    """Consecutive failures after which an upstream is ejected."""
    eject_seconds: Annotated[float, Meta(gt=0)] = 30.0
    """How long an ejected upstream takes no traffic (restarted by each failure)."""
    probe_seconds: Annotated[float, Meta(ge=0)] = 10.0
    """Period of the active health probe (0: no probes)."""
    health_path: str | None = None
    """What the probe GETs: `{base_url}/models` by default; a path starting with `/` is
    taken from the server's root (e.g. `/health`), else below `base_url`."""

    @property
    def chained(self) -> bool:
        return True


AnyModelConfig: TypeAlias = StubModelConfig | LlamaModelConfig | ReplayModelConfig | UpstreamModelConfig
"""What a `[[models]]` table decodes into, by its `provider`."""


def with_provider(table: Mapping[str, object]) -> dict[str, object]:
    """A `[[models]]` table with its `provider`, which selects its kind of passport: a
    model that names none is served by the stub."""
    return {"provider": "stub", **table}


def model_config(**fields: object) -> AnyModelConfig:
    """A passport from its keys, as a settings table gives them; raises
    `msgspec.ValidationError` naming a bad key."""
    return msgspec.convert(with_provider(fields), AnyModelConfig)
