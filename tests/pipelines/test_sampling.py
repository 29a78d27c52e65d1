"""Sampling in layers (passport defaults < preset < request) and the output cap
(`effective = min(requested, passport cap, gateway cap)`, with where it came from)."""

from __future__ import annotations

import pytest

from pipelines.config import Preset, SamplingDefaults
from pipelines.sampling import SamplingSnapshot, merge_sampling
from pipelines.types import SamplingOverrides

PASSPORT = SamplingDefaults(
    temperature=0.7, top_p=0.9, top_k=40, min_p=0.05, repeat_penalty=1.1, seed=None, reasoning_effort="medium"
)
PRESET = Preset(temperature=0.0, top_k=1, seed=7, reasoning_effort="high")
NOTHING = SamplingOverrides()


def merge(
    request: SamplingOverrides = NOTHING,
    *,
    preset: Preset | None = None,
    passport_cap: int = 64,
    gateway_cap: int | None = None,
) -> SamplingSnapshot:
    return merge_sampling(
        PASSPORT,
        "p" if preset is not None else None,
        preset,
        request,
        passport_cap=passport_cap,
        gateway_cap=gateway_cap,
    )


# --- layers -----------------------------------------------------------------------


def test_passport_defaults_alone() -> None:
    s = merge()
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty) == (0.7, 0.9, 40, 0.05, 1.1)
    assert s.seed is None
    assert s.reasoning_effort == "medium"
    assert s.preset is None


def test_preset_overrides_passport_where_it_sets_a_value() -> None:
    s = merge(preset=PRESET)
    assert s.temperature == 0.0
    assert s.top_k == 1
    assert s.seed == 7
    assert s.reasoning_effort == "high"
    # what the preset leaves alone stays the passport's
    assert (s.top_p, s.min_p, s.repeat_penalty) == (0.9, 0.05, 1.1)
    assert s.preset == "p"


def test_request_overrides_preset_and_passport() -> None:
    s = merge(SamplingOverrides(temperature=1.3, top_p=0.5, seed=99, reasoning_effort="low"), preset=PRESET)
    assert (s.temperature, s.top_p, s.seed, s.reasoning_effort) == (1.3, 0.5, 99, "low")
    # the preset still wins where the request is silent
    assert s.top_k == 1


def test_falsy_request_values_still_override() -> None:
    """0 and 0.0 are values, not "unset": only None leaves a layer alone."""
    s = merge(SamplingOverrides(temperature=0.0, top_k=0, min_p=0.0, seed=0))
    assert (s.temperature, s.top_k, s.min_p, s.seed) == (0.0, 0, 0.0, 0)


def test_every_merged_field_follows_the_layer_order() -> None:
    fields = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repeat_penalty")
    passport = SamplingDefaults(
        temperature=0.1, top_p=0.1, top_k=1, min_p=0.1, presence_penalty=0.1, frequency_penalty=0.1, repeat_penalty=1.1
    )
    preset = Preset(
        temperature=0.2, top_p=0.2, top_k=2, min_p=0.2, presence_penalty=0.2, frequency_penalty=0.2, repeat_penalty=1.2
    )
    request = SamplingOverrides(
        temperature=0.3, top_p=0.3, top_k=3, min_p=0.3, presence_penalty=0.3, frequency_penalty=0.3, repeat_penalty=1.3
    )
    only_passport = merge_sampling(passport, None, None, SamplingOverrides(), passport_cap=8, gateway_cap=None)
    with_preset = merge_sampling(passport, "x", preset, SamplingOverrides(), passport_cap=8, gateway_cap=None)
    with_request = merge_sampling(passport, "x", preset, request, passport_cap=8, gateway_cap=None)
    for f in fields:
        assert getattr(only_passport, f) == getattr(passport, f), f
        assert getattr(with_preset, f) == getattr(preset, f), f
        assert getattr(with_request, f) == getattr(request, f), f


def test_snapshot_as_dict_has_every_field() -> None:
    s = merge(SamplingOverrides(max_tokens=10), preset=PRESET)
    d = s.as_dict()
    assert set(d) == set(SamplingSnapshot.__struct_fields__)
    assert d["max_tokens"] == 10 and d["requested_max_tokens"] == 10
    assert d["cap_applied"] is False and d["cap_source"] == "request"


# --- the cap ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_max", "preset_max", "passport_cap", "gateway_cap", "expected"),
    [
        # nothing asked: the passport's cap is the budget
        (None, None, 64, None, (64, None, True, "passport")),
        # the request asks for less than any cap: it gets what it asked
        (10, None, 64, None, (10, 10, False, "request")),
        # exactly the cap is not a cut
        (64, None, 64, None, (64, 64, False, "request")),
        # more than the passport allows: cut to the passport
        (100, None, 64, None, (64, 100, True, "passport")),
        # the gateway's cap is lower than the passport's: the gateway cuts
        (100, None, 64, 32, (32, 100, True, "gateway")),
        (None, None, 64, 32, (32, None, True, "gateway")),
        # a gateway cap above the passport's changes nothing
        (100, None, 64, 500, (64, 100, True, "passport")),
        # a gateway cap equal to the passport's: the passport is named
        (100, None, 64, 64, (64, 100, True, "passport")),
        # under both caps, the request still wins
        (5, None, 64, 32, (5, 5, False, "request")),
        # a preset's max_tokens stands in for an absent request value
        (None, 8, 64, None, (8, 8, False, "preset")),
        (None, 100, 64, None, (64, 100, True, "passport")),
        (None, 100, 64, 32, (32, 100, True, "gateway")),
        # ... but the request's own value beats the preset's
        (20, 8, 64, None, (20, 20, False, "request")),
        (200, 8, 64, None, (64, 200, True, "passport")),
    ],
)
def test_cap(
    request_max: int | None,
    preset_max: int | None,
    passport_cap: int,
    gateway_cap: int | None,
    expected: tuple[int, int | None, bool, str],
) -> None:
    preset = Preset(max_tokens=preset_max) if preset_max is not None else None
    s = merge(
        SamplingOverrides(max_tokens=request_max), preset=preset, passport_cap=passport_cap, gateway_cap=gateway_cap
    )
    assert (s.max_tokens, s.requested_max_tokens, s.cap_applied, s.cap_source) == expected


def test_effective_is_never_above_any_cap() -> None:
    for requested in (None, 1, 7, 31, 32, 33, 63, 64, 65, 10_000):
        for gateway in (None, 1, 32, 64, 128):
            s = merge(SamplingOverrides(max_tokens=requested), passport_cap=64, gateway_cap=gateway)
            caps = [64] + ([gateway] if gateway is not None else []) + ([requested] if requested is not None else [])
            assert s.max_tokens == min(caps), (requested, gateway)
            assert s.requested_max_tokens == requested
            if requested is not None:
                assert s.cap_applied == (s.max_tokens < requested)
