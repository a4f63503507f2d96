"""Stop sequences: streaming matcher and non-streaming cut agree, at every split of the text."""

from __future__ import annotations

import random

import pytest

from clewdr_lite.protocol.stops import StopMatcher, cut


def run(stops, feeds) -> tuple[list[str], str | None, list[str | None]]:
    """Feed every piece; return (emitted pieces incl. the flush, final seq, seq after each feed)."""
    matcher = StopMatcher(stops)
    pieces, seqs = [], []
    for text in feeds:
        out, seq = matcher.feed(text)
        pieces.append(out)
        seqs.append(seq)
    tail, seq = matcher.flush()
    pieces.append(tail)
    return pieces, seq, seqs


@pytest.mark.parametrize(
    ("stops", "feeds", "pieces", "seq"),
    [
        # No stops: everything passes straight through.
        ([], ["Hello", " world"], ["Hello", " world", ""], None),
        (["", ""], ["abc"], ["abc", ""], None),
        # Plain match inside one feed; the stop text is removed.
        (["STOP"], ["fooSTOPbar"], ["foo", ""], "STOP"),
        # Held back while it may be a stop, then released when it is not.
        (["\n\nHuman:"], ["Hi\n", "\nHu", "mble"], ["Hi", "", "\n\nHumble", ""], None),
        # Spanning two and three feeds.
        (["\n\nHuman:"], ["Hi\n", "\nHuman: more"], ["Hi", ""], "\n\nHuman:"),
        (["\n\nHuman:"], ["Hi\n", "\nHu", "man:x"], ["Hi", "", ""], "\n\nHuman:"),
        (["END"], ["aE", "N", "Db"], ["a", "", ""], "END"),
        # Held text flushed at the end of the stream.
        (["END"], ["abcEN"], ["abc", "EN"], None),
        (["END"], ["abc", "E"], ["abc", "", "E"], None),
        # A partial that turns out not to match is emitted with the next feed, in one piece.
        (["abc"], ["xab", "abx"], ["x", "ababx", ""], None),
        (["abc"], ["xab", "ab", "c!"], ["x", "ab", ""], "abc"),
        # Equal starts: the longest wins, so "ab" waits for a possible "abc".
        (["ab", "abc"], ["xab", "c"], ["x", ""], "abc"),
        (["ab", "abc"], ["xab", "d"], ["x", ""], "ab"),
        (["ab", "abc"], ["xab"], ["x", ""], "ab"),  # decided at flush
        # Earliest start wins over a shorter sequence found first.
        (["bc", "abcd"], ["xabc", "d"], ["x", ""], "abcd"),
        (["bc", "abcd"], ["xabc", "e"], ["x", "a"], "bc"),
        (["bc", "abcd"], ["xabc"], ["x", "a"], "bc"),  # decided at flush
        (["b", "abc"], ["ab", "c"], ["", ""], "abc"),
        # Overlapping stops in one feed.
        (["ab", "abc", "bc"], ["zabcz"], ["z", ""], "abc"),
        (["ab", "abc", "bc"], ["zbcab"], ["z", ""], "bc"),
        # Unicode: matching is on characters, not bytes.
        (["。\n"], ["你好。", "\n再见"], ["你好", ""], "。\n"),
        (["🛑"], ["go 🛑 no"], ["go ", ""], "🛑"),
        (["é!"], ["caf", "é", "?"], ["caf", "", "é?", ""], None),
        # Empty feeds change nothing.
        (["END"], ["", "aEN", "", "D", ""], ["", "a", "", "", ""], "END"),
    ],
)
def test_table(stops, feeds, pieces, seq):
    got, got_seq, _ = run(stops, feeds)
    assert (got[: len(pieces)], got_seq) == (pieces, seq)
    assert cut("".join(feeds), stops) == ("".join(pieces), seq)


def test_after_a_match_every_feed_and_the_flush_report_it():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("aSTOPb") == ("a", "STOP")
    assert matcher.feed("more") == ("", "STOP")
    assert matcher.flush() == ("", "STOP")
    assert matcher.matched == "STOP"


def test_one_string_per_feed_even_when_nothing_is_pending():
    matcher = StopMatcher(["\n\nHuman:"])
    assert matcher.feed("a long delta with no stop in it") == ("a long delta with no stop in it", None)
    assert matcher.feed("ends with\n") == ("ends with", None)
    assert matcher.feed("\nH") == ("", None)
    assert matcher.feed("ello") == ("\n\nHello", None)


def test_bool():
    assert not StopMatcher([])
    assert not StopMatcher([""])
    assert StopMatcher(["x"])


@pytest.mark.parametrize(
    ("text", "stops", "want"),
    [
        ("hello", [], ("hello", None)),
        ("hello", ["lo", "l"], ("he", "l")),
        ("hello", ["ll", "l"], ("he", "ll")),
        ("hello", ["hello"], ("", "hello")),
        ("", ["x"], ("", None)),
        ("aaa", ["aa"], ("", "aa")),
    ],
)
def test_cut(text, stops, want):
    assert cut(text, stops) == want


ALPHABET = "abc \n😀é"
STOP_POOL = ["a", "ab", "abc", "bc", "ca", "cab", "aab", "\n\n", " \n", "😀é", "éa", "bcbc", "abab"]


def _split(rng: random.Random, text: str) -> list[str]:
    points = sorted(rng.sample(range(len(text) + 1), rng.randint(0, min(6, len(text) + 1))))
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


def test_property_streaming_equals_cut():
    rng = random.Random(20240611)
    for _ in range(5000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))
        stops = rng.sample(STOP_POOL, rng.randint(0, 4))
        feeds = _split(rng, text)
        pieces, seq, seqs = run(stops, feeds)
        assert ("".join(pieces), seq) == cut(text, stops), (text, stops, feeds)
        # Once a feed reports a match, every later feed reports the same one.
        first = next((i for i, s in enumerate(seqs) if s is not None), len(seqs))
        assert all(s == seq for s in seqs[first:])


def test_property_held_text_is_a_proper_prefix_of_a_stop():
    rng = random.Random(7)
    for _ in range(2000):
        stops = rng.sample(STOP_POOL, rng.randint(1, 4))
        matcher, emitted, fed = StopMatcher(stops), "", ""
        for _ in range(rng.randint(1, 8)):
            piece = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4)))
            fed += piece
            out, seq = matcher.feed(piece)
            emitted += out
            if seq is not None:
                break
            held = fed[len(emitted) :]
            assert fed.startswith(emitted)
            assert held == "" or any(len(held) < len(s) and s.startswith(held) for s in stops)
