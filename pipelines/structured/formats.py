"""String `format`s the grammar holds to, and a sample value of each (the stub's).

Each grammar is the inside of a JSON string and accepts only values that the validator's
format checks accept too (no 31st of February: months have their own day ranges, February
stops at 28; years start at 1000).
"""

from __future__ import annotations

__all__ = ["FORMAT_GRAMMARS", "FORMAT_SAMPLES"]

_DATE = (
    '[1-9] [0-9]{3} "-" ('
    '("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])'
    ' | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30")'
    ' | "02" "-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))'
)
_TIME = (
    '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})?'
    ' ("Z" | [+\\x2D] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])'
)
_HEX = "[0-9a-f]"
_LABEL = "[a-z0-9] ([a-z0-9\\x2D]{0,30} [a-z0-9])?"
_OCTET = '("25" [0-5] | "2" [0-4] [0-9] | "1" [0-9]{2} | [1-9] [0-9] | [0-9])'

FORMAT_GRAMMARS: dict[str, str] = {
    "date": _DATE,
    "time": _TIME,
    "date-time": f'{_DATE} "T" {_TIME}',
    "uuid": f'{_HEX}{{8}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{12}}',
    "email": f'[a-z0-9_+]{{1,32}} ("." [a-z0-9_+]{{1,32}}){{0,3}} "@" {_LABEL} ("." {_LABEL}){{0,3}} "." [a-z]{{2,8}}',
    "hostname": f'{_LABEL} ("." {_LABEL}){{0,4}}',
    "ipv4": f'{_OCTET} "." {_OCTET} "." {_OCTET} "." {_OCTET}',
}
"""GBNF (without quotes) of each enforced format."""

FORMAT_SAMPLES: dict[str, str] = {
    "date": "2025-01-01",
    "time": "12:00:00Z",
    "date-time": "2025-01-01T12:00:00Z",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "email": "stub@example.com",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri": "https://example.com/",
    "iri-reference": "https://example.com/",
    "uri-template": "https://example.com/{id}",
    "url": "https://example.com/",
    "idn-email": "stub@example.com",
    "idn-hostname": "example.com",
    "duration": "P1D",
    "json-pointer": "/a",
    "relative-json-pointer": "0",
    "regex": "a",
    "byte": "AA==",
    "binary": "a",
    "password": "a",
}
"""A value valid for each known format (the stub's answer; formats here without a grammar
are still validated)."""
