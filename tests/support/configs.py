"""Settings files the tests serve."""

from __future__ import annotations

STUB_MODELS = """
[server]
request_timeout = 60

[[models]]
id = "stub-chat"
aliases = ["stub-chat-alias"]
role = "lightweight"
format = "chat"
provider = "stub"
max_output_tokens = 64

[[models]]
id = "stub-harmony"
role = "primary"
format = "harmony"
provider = "stub"
max_output_tokens = 256

[models.sampling]
temperature = 0.5
reasoning_effort = "low"

[presets.precise]
temperature = 0.0
top_p = 1.0
max_tokens = 8
"""
