"""Stop sequences enforced by the proxy (claude-web.md §12, the clewdr-lite rules).

A match is the occurrence that starts earliest; at equal starts the longest sequence wins. The stop
text itself is removed. Streaming and non-streaming agree: the text a StopMatcher emits over a
whole stream, and the sequence it reports, are exactly what cut() gives for the whole text.
"""

from __future__ import annotations

from collections.abc import Iterable


def _prepare(stops: Iterable[str]) -> tuple[str, ...]:
    """Distinct non-empty stops, longest first, so a strict `<` on start keeps the longest at ties."""
    return tuple(sorted({s for s in stops if s}, key=len, reverse=True))


def _earliest(text: str, stops: tuple[str, ...]) -> tuple[int, str | None]:
    """(start, seq) of the earliest match, longest at equal starts; (len(text), None) if none."""
    best, seq = len(text), None
    for s in stops:
        if s in text:  # the cheap test first: most text holds no stop at all
            i = text.find(s, 0, best + len(s))  # an occurrence starting after `best` cannot win
            if i != -1 and i < best:
                best, seq = i, s
    return best, seq


def _hold_start(text: str, stops: tuple[str, ...]) -> int:
    """Start of the longest suffix of `text` that is a proper prefix of some stop (len(text) if none)."""
    n = len(text)
    best = n
    for s in stops:
        first = s[0]
        j = text.find(first, max(n - len(s) + 1, 0), best)
        while j != -1:
            if s.startswith(text[j:]):
                best = j
                break
            j = text.find(first, j + 1, best)
    return best


def cut(text: str, stops: Iterable[str]) -> tuple[str, str | None]:
    """Non-streaming: (text before the earliest stop, that stop) or (text, None)."""
    start, seq = _earliest(text, _prepare(stops))
    return (text, None) if seq is None else (text[:start], seq)


class StopMatcher:
    """Streaming stop-sequence matcher over text deltas; matches may span any number of feeds."""

    __slots__ = ("_stops", "_tails", "_held", "matched")

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = _prepare(stops)
        # A held suffix equals some s[:k] with k < len(s), so it ends in a character of some s[:-1].
        self._tails = frozenset("".join(s[:-1] for s in self._stops))
        self._held = ""  # not yet emitted: could still be the start of a stop sequence
        self.matched: str | None = None  # the stop that ended the text, once one has

    def __bool__(self) -> bool:
        return bool(self._stops)

    def feed(self, text: str) -> tuple[str, str | None]:
        """Return (text safe to emit now, the matched stop or None); after a match, ("", stop)."""
        if self.matched is not None:
            return "", self.matched
        buf = self._held + text if self._held else text
        if not self._stops:
            return buf, None
        hold = _hold_start(buf, self._stops) if buf and buf[-1] in self._tails else len(buf)
        start, seq = _earliest(buf, self._stops)
        # A complete match at or after `hold` must wait: the held partial starts no later, so it
        # may still become an earlier-starting (or, at the same start, longer) match.
        if seq is not None and start < hold:
            self._held = ""
            self.matched = seq
            return buf[:start], seq
        self._held = buf[hold:]
        return buf[:hold], None

    def flush(self) -> tuple[str, str | None]:
        """End of stream: (held-back text, None), or the text before a match the end has decided.

        Held text can contain a complete stop that was waiting on a longer or earlier partial; once
        the stream ends that partial can no longer complete, so the complete one is the match.
        """
        if self.matched is not None:
            return "", self.matched
        held, self._held = self._held, ""
        start, seq = _earliest(held, self._stops)
        if seq is None:
            return held, None
        self.matched = seq
        return held[:start], seq
