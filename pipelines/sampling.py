"""Sampling merge in layers and the output cap (ADR-0026 `prepare`).

passport defaults < preset named by the request < values the request sets; the cap is
`effective = min(requested, passport cap, gateway cap)` with where it came from.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from pipelines.config import Preset, SamplingDefaults
from pipelines.types import SamplingOverrides

__all__ = ["CapSource", "SamplingSnapshot", "merge_sampling"]

CapSource = Literal["request", "preset", "passport", "gateway"]

_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "seed",
    "reasoning_effort",
)


class SamplingSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The sampling one generation runs with; the same in `GenerationStarted` and
    `GenerationCompleted.result_summary`."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    presence_penalty: float
    frequency_penalty: float
    repeat_penalty: float
    seed: int | None
    reasoning_effort: Literal["low", "medium", "high"]
    preset: str | None
    max_tokens: int
    requested_max_tokens: int | None
    cap_applied: bool
    cap_source: CapSource

    def as_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def merge_sampling(
    defaults: SamplingDefaults,
    preset_name: str | None,
    preset: Preset | None,
    request: SamplingOverrides,
    *,
    passport_cap: int,
    gateway_cap: int | None,
) -> SamplingSnapshot:
    values: dict[str, Any] = {f: getattr(defaults, f) for f in _FIELDS}
    for layer in (preset, request):
        if layer is None:
            continue
        for f in _FIELDS:
            v = getattr(layer, f)
            if v is not None:
                values[f] = v

    requested: int | None = request.max_tokens
    requested_source: CapSource = "request"
    if requested is None and preset is not None and preset.max_tokens is not None:
        requested, requested_source = preset.max_tokens, "preset"

    effective, source = passport_cap, "passport"
    if gateway_cap is not None and gateway_cap < effective:
        effective, source = gateway_cap, "gateway"
    if requested is not None and requested <= effective:
        effective, source = requested, requested_source

    return SamplingSnapshot(
        **values,
        preset=preset_name,
        max_tokens=effective,
        requested_max_tokens=requested,
        cap_applied=requested is None or effective < requested,
        cap_source=source,  # type: ignore[arg-type]
    )
