"""Post-processing shared by both pipelines (ADR-0026 finalize): stop sequences that
span pieces, echo stripping. Streaming-safe: text is held back only as long as it
could still turn out to be the start of a stop sequence or an echo."""

from __future__ import annotations

__all__ = ["EchoStripper", "StopMatcher"]


class StopMatcher:
    """Cuts the output before the first stop sequence, across piece boundaries.

    Never emits any part of a stop string and never holds back more than the
    longest stop string minus one character.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buffer = ""
        self.matched: str | None = None

    @property
    def active(self) -> bool:
        """Whether there is any stop sequence to look for."""
        return bool(self._stops)

    def feed(self, text: str) -> str:
        """Returns the text that is safe to emit now; sets `matched` on a stop."""
        if not self._stops:
            return text
        if self.matched is not None:
            return ""
        buf = self._buffer + text
        cut = -1
        for stop in self._stops:
            i = buf.find(stop)
            if i != -1 and (cut == -1 or i < cut):
                cut, self.matched = i, stop
        if cut != -1:
            self._buffer = ""
            return buf[:cut]
        # hold back the longest suffix that is a prefix of some stop
        keep = 0
        for n in range(min(self._hold, len(buf)), 0, -1):
            tail = buf[-n:]
            if any(s.startswith(tail) for s in self._stops):
                keep = n
                break
        self._buffer = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep] if keep else buf

    def flush(self) -> str:
        out, self._buffer = self._buffer, ""
        return "" if self.matched is not None else out


class EchoStripper:
    """Drops a leading repeat of the prompt's tail (some small models echo the last
    user turn before answering). Holds back at most `len(tail)` characters."""

    def __init__(self, tail: str) -> None:
        self._tail = tail.strip()
        self._buffer = ""
        self._decided = not self._tail
        self._trim = False
        """An echo was dropped at a piece boundary: trim the whitespace that follows it."""

    def feed(self, text: str) -> str:
        if self._decided:
            if self._trim:
                text = text.lstrip()
                self._trim = not text
            return text
        buf = self._buffer + text
        probe = buf.lstrip()
        if len(probe) >= len(self._tail):
            self._decided = True
            self._buffer = ""
            if probe.startswith(self._tail):
                rest = probe[len(self._tail) :].lstrip()
                self._trim = not rest
                return rest
            return buf
        if self._tail.startswith(probe):
            self._buffer = buf
            return ""
        self._decided = True
        self._buffer = ""
        return buf

    def flush(self) -> str:
        out, self._buffer = self._buffer, ""
        self._decided = True
        return out
