"""What the benchmarks ask: the LLM runs' prompts and requests per client, the stub model."""

from __future__ import annotations

__all__ = ["CHAT_PROMPTS", "RAW_PROMPTS", "STUB_SETTINGS", "prompt_for", "rounds_for"]

# The stub model of the overhead runs (bench/compare.py with wrk, bench/stub_inprocess.py).
STUB_SETTINGS = """\
[[models]]
id = "stub-chat"
provider = "stub"
format = "chat"
max_output_tokens = 64
stub_words = 4
"""

CHAT_PROMPTS = tuple(
    f"Write a long, detailed story about {topic}. Use many paragraphs."
    for topic in (
        "a lighthouse keeper",
        "a robot gardener",
        "the deep sea",
        "a mountain village",
        "a secret library",
        "a night train",
        "a summer storm",
        "an old map",
    )
)
RAW_PROMPTS = tuple(
    f"Chapter one. {opening}"
    for opening in (
        "The lighthouse keeper climbed the stairs as the storm began, and",
        "In the robot's garden every flower had a number, and",
        "Far below the waves, where no light reached, the divers found",
        "The village at the top of the mountain had one rule:",
        "Nobody knew who had built the secret library, but",
        "The night train left the station at midnight, and",
        "The summer storm arrived without warning, and",
        "The old map showed an island that was not on any other map, and",
    )
)


def rounds_for(clients: int, rounds: int) -> int:
    """Requests per client at a level: `rounds`, but at least 4 requests per level (percentiles)."""
    return max(rounds, -(-4 // clients))


def prompt_for(kind: str, client: int, round_: int, n_clients: int) -> str:
    prompts = CHAT_PROMPTS if kind == "chat" else RAW_PROMPTS
    return prompts[(client + round_ * n_clients) % len(prompts)]
