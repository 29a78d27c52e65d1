"""Matching a `pattern` without backtracking: the validator's (Python's `re` backtracks, so
a client's pattern could hold the event loop for ever on a crafted string)."""

from __future__ import annotations

from pipelines.structured.regex import Alternatives, Chars, Node, Ranges, Sequence, UnsupportedPattern, parse_pattern

__all__ = ["MATCH_BUDGET", "matches"]


MATCH_BUDGET = 2_000_000
"""Most (automaton state x character) steps one `matches` may take."""


class _Automaton:
    """The tree as a Thompson automaton: state 0 accepts; a state is a character set and
    its next state, or a split into several states. Matching walks all states at once,
    so it takes time linear in the text (no backtracking)."""

    def __init__(self, node: Node, limit: int) -> None:
        self.sets: list[Ranges | None] = [None]
        self.next: list[list[int]] = [[]]
        self.limit = limit
        self.start = self.build(node, 0)

    def add(self, ranges: Ranges | None, nxt: list[int]) -> int:
        if len(self.sets) >= self.limit:
            raise UnsupportedPattern("the pattern's automaton is too large")
        self.sets.append(ranges)
        self.next.append(nxt)
        return len(self.sets) - 1

    def build(self, node: Node, nxt: int) -> int:
        if isinstance(node, Chars):
            return self.add(node.ranges, [nxt])
        if isinstance(node, Sequence):
            for item in reversed(node.items):
                nxt = self.build(item, nxt)
            return nxt
        if isinstance(node, Alternatives):
            split = self.add(None, [])
            self.next[split] = [self.build(o, nxt) for o in node.options]
            return split
        current = nxt
        if node.high is None:
            loop = self.add(None, [])
            self.next[loop] = [self.build(node.item, loop), nxt]
            current = loop
        else:
            for _ in range(node.high - node.low):
                split = self.add(None, [])
                self.next[split] = [self.build(node.item, current), nxt]
                current = split
        for _ in range(node.low):
            current = self.build(node.item, current)
        return current

    def closure(self, states: set[int]) -> set[int]:
        out: set[int] = set()
        stack = list(states)
        while stack:
            state = stack.pop()
            if state in out:
                continue
            out.add(state)
            if self.sets[state] is None:
                stack.extend(self.next[state])
        return out

    def matches(self, text: str) -> bool:
        current = self.closure({self.start})
        for ch in text:
            cp = ord(ch)
            moved = set()
            for state in current:
                ranges = self.sets[state]
                if ranges is not None and any(lo <= cp <= hi for lo, hi in ranges):
                    moved.update(self.next[state])
            current = self.closure(moved)
            if not current:
                return False
        return 0 in current


def matches(pattern: str, text: str) -> bool | None:
    """Whether `pattern` matches somewhere in `text`, in linear time; None when the pattern
    is outside the subset or matching it would cost more than `MATCH_BUDGET` steps."""
    try:
        node = parse_pattern(pattern)
        automaton = _Automaton(node, max(16, MATCH_BUDGET // max(1, len(text))))
    except (UnsupportedPattern, RecursionError):
        return None
    return automaton.matches(text)
