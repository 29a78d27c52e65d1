"""Post-processing that must work on streams: stop sequences across piece boundaries,
and stripping a leading echo of the user's last turn."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from pipelines.postprocess import EchoStripper, StopMatcher


def run_stops(stops: Sequence[str], pieces: Sequence[str]) -> tuple[str, str | None, list[str]]:
    """Feeds `pieces` one by one; returns (everything emitted, matched stop, per-feed outputs)."""
    m = StopMatcher(tuple(stops))
    outs = [m.feed(p) for p in pieces]
    tail = m.flush()
    return "".join(outs) + tail, m.matched, outs


def reference(stops: Sequence[str], text: str) -> tuple[str, str | None]:
    """What the whole text cut at the earliest stop occurrence looks like."""
    best: tuple[int, str] | None = None
    for s in stops:
        i = text.find(s)
        if s and i != -1 and (best is None or i < best[0]):
            best = (i, s)
    return (text, None) if best is None else (text[: best[0]], best[1])


def split_randomly(text: str, rng: random.Random) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        n = rng.randint(0, 4)  # empty pieces happen too
        pieces.append(text[i : i + n])
        i += n
    return pieces


# --- StopMatcher ----------------------------------------------------------------------


def test_no_stops_pass_everything_through_at_once() -> None:
    m = StopMatcher(())
    assert m.feed("abc") == "abc"
    assert m.feed("") == ""
    assert m.flush() == ""
    assert m.matched is None
    # empty strings are not stops
    assert StopMatcher(("",)).feed("abc") == "abc"


def test_a_stop_inside_one_piece_cuts_there() -> None:
    out, matched, _ = run_stops(["END"], ["hello END world"])
    assert (out, matched) == ("hello ", "END")


@pytest.mark.parametrize(
    "pieces",
    [
        ["hello E", "ND world"],
        ["hello EN", "D world"],
        ["hello ", "E", "N", "D", " world"],
        ["hello", " ", "EN", "", "D"],
    ],
)
def test_a_stop_split_across_pieces_is_never_emitted(pieces: list[str]) -> None:
    out, matched, outs = run_stops(["END"], pieces)
    assert (out, matched) == ("hello ", "END")
    assert not any("E" in o for o in outs)


def test_a_false_start_is_released_once_it_cannot_be_a_stop() -> None:
    m = StopMatcher(("END",))
    assert m.feed("say E") == "say "
    assert m.feed("N") == ""
    assert m.feed("O") == "ENO"  # "ENO" can no longer start "END"
    assert m.feed("UGH") == "UGH"
    assert m.flush() == ""
    assert m.matched is None


def test_held_text_comes_out_at_flush_when_no_stop_followed() -> None:
    out, matched, outs = run_stops(["END"], ["the E", "N"])
    assert outs == ["the ", ""]
    assert (out, matched) == ("the EN", None)


def test_nothing_is_emitted_after_a_match() -> None:
    m = StopMatcher(("x",))
    assert m.feed("abxcd") == "ab"
    assert m.feed("more text") == ""
    assert m.flush() == ""
    assert m.matched == "x"


def test_holds_back_at_most_the_longest_stop_minus_one() -> None:
    stops = ("abcdef", "xyz")
    m = StopMatcher(stops)
    fed = emitted = ""
    for ch in "abcdeabcdeabcdexyabcdeabcde":
        fed += ch
        emitted += m.feed(ch)
        assert fed.startswith(emitted)
        assert len(fed) - len(emitted) <= len("abcdef") - 1, (fed, emitted)
    assert m.matched is None


def test_only_a_possible_stop_prefix_is_held_back() -> None:
    m = StopMatcher(("STOP",))
    assert m.feed("no stop here") == "no stop here"
    assert m.feed("ST") == ""
    assert m.feed("x") == "STx"


def test_multiple_stops_the_earliest_in_the_text_wins() -> None:
    out, matched, _ = run_stops(["world", "hello"], ["say hello world"])
    assert (out, matched) == ("say ", "hello")
    out, matched, _ = run_stops(["world", "hello"], ["say hel", "lo world"])
    assert (out, matched) == ("say ", "hello")


def test_multiple_stops_of_different_lengths_across_pieces() -> None:
    stops = ["\n\nUser:", "</s>", "###"]
    out, matched, _ = run_stops(stops, ["Answer.", "\n", "\nUs", "er: more"])
    assert (out, matched) == ("Answer.", "\n\nUser:")
    out, matched, _ = run_stops(stops, ["Answer.\n", "#", "##"])
    assert (out, matched) == ("Answer.\n", "###")
    out, matched, _ = run_stops(stops, ["Answer.<", "/", "s>", "\n\nUser:"])
    assert (out, matched) == ("Answer.", "</s>")


def test_unicode_stops() -> None:
    out, matched, _ = run_stops(["→ fin"], ["été ", "→", " f", "in", " après"])
    assert (out, matched) == ("été ", "→ fin")


def test_random_splits_match_the_whole_text_reference() -> None:
    """Any split of any text gives what cutting the whole text at its earliest stop gives
    (stop sets where no stop contains another, so "earliest" is unambiguous)."""
    rng = random.Random(20250903)
    alphabet = "ab c"
    for _ in range(2000):
        stops: list[str] = []
        for _ in range(rng.randint(1, 3)):
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
            if not any(s in t or t in s for t in stops):
                stops.append(s)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        pieces = split_randomly(text, rng)
        out, matched, outs = run_stops(stops, pieces)
        assert (out, matched) == reference(stops, text), (stops, pieces)
        # never any part of the stop that matched, piece by piece
        assert text.startswith(out)
        hold = max(len(s) for s in stops) - 1
        fed = emitted = 0
        for piece, o in zip(pieces, outs, strict=True):
            fed += len(piece)
            emitted += len(o)
            if matched is None:
                assert fed - emitted <= hold, (stops, pieces)


# --- EchoStripper ---------------------------------------------------------------------


def run_echo(tail: str, pieces: Sequence[str]) -> tuple[str, list[str]]:
    e = EchoStripper(tail)
    outs = [e.feed(p) for p in pieces]
    return "".join(outs) + e.flush(), outs


def test_a_leading_echo_is_dropped() -> None:
    out, _ = run_echo("What is 2+2?", ["What is 2+2? It is 4."])
    assert out == "It is 4."


def test_an_echo_split_across_pieces_is_dropped() -> None:
    out, outs = run_echo("What is 2+2?", ["What", " is", " 2+", "2?\nFour", "."])
    assert out == "Four."
    assert outs[:3] == ["", "", ""]


def test_surrounding_whitespace_does_not_hide_an_echo() -> None:
    out, _ = run_echo("  hello there \n", ["\nhello", " there  General Kenobi"])
    assert out == "General Kenobi"


def test_an_answer_that_is_not_an_echo_is_untouched() -> None:
    out, outs = run_echo("What is 2+2?", ["It is", " 4."])
    assert out == "It is 4."
    assert outs == ["It is", " 4."]  # decided at once: nothing held back


def test_a_false_start_is_released_whole() -> None:
    out, outs = run_echo("What is 2+2?", ["What", " is", " it", " to you?"])
    assert out == "What is it to you?"
    assert outs[:2] == ["", ""]


def test_an_answer_shorter_than_the_echo_comes_out_at_flush() -> None:
    out, _ = run_echo("What is 2+2?", ["What is"])
    assert out == "What is"


def test_only_the_leading_echo_is_dropped() -> None:
    out, _ = run_echo("hi", ["hi there,", " hi again"])
    assert out == "there, hi again"


def test_an_empty_tail_strips_nothing() -> None:
    out, outs = run_echo("   ", ["  answer", " text"])
    assert out == "  answer text"
    assert outs == ["  answer", " text"]


def test_echo_holds_back_at_most_the_tail_length() -> None:
    tail = "Tell me a story"
    e = EchoStripper(tail)
    fed = emitted = ""
    for ch in "Tell me a stor":
        fed += ch
        emitted += e.feed(ch)
        assert len(fed) - len(emitted) <= len(tail)
    assert e.flush() == "Tell me a stor"


def test_dropping_an_echo_does_not_depend_on_where_the_pieces_split() -> None:
    text = "What is 2+2?\nFour."
    for cut in range(1, len(text)):
        out, _ = run_echo("What is 2+2?", [text[:cut], text[cut:]])
        assert out == "Four.", cut
