"""upstream/body.Pieces: an answer's body as the lean clients hand it over, and its idle deadline."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from clewdr_lite.upstream import body

# a body's idle deadline on a timer of its own, or as an alarm on its client's shared Deadlines
SHARED = pytest.mark.parametrize("shared", [False, True], ids=["own-timer", "shared-alarms"])


def _pieces(loop, shared: bool) -> body.Pieces:
    return body.Pieces(loop, body.Deadlines(loop) if shared else None)


def _count_idle_timers(monkeypatch, loop) -> list:
    """The times of the idle timers the body module arms on `loop` (whatever it names them)."""
    armed, real = [], loop.call_at

    def counting(when, callback, *args, **kwargs):
        if getattr(callback, "__func__", callback).__module__ == body.__name__:
            armed.append(when)
        return real(when, callback, *args, **kwargs)
    monkeypatch.setattr(loop, "call_at", counting)
    return armed


@SHARED
async def test_a_paced_body_longer_than_its_idle_time_is_read_whole_on_one_timer(monkeypatch, shared):
    """Six waits 50 ms apart under a 0.5 s idle deadline: the deadline moves with each piece
    and one timer serves them all (a timer per wait cost more than a streamed event's own work);
    the body's end leaves no timer behind."""
    loop = asyncio.get_running_loop()
    pieces = _pieces(loop, shared)
    armed = _count_idle_timers(monkeypatch, loop)

    async def produce():
        for n in range(6):
            await asyncio.sleep(0.05)
            pieces.put(b"%d" % n)
        pieces.end()
    producer = asyncio.ensure_future(produce())
    got = []
    while (piece := await pieces.next(0.5)) is not None:
        got.append(piece)
    await producer
    assert b"".join(got) == b"012345" and len(got) == 6  # six waits
    assert 1 <= len(armed) <= 2  # one timer (two if this machine stalled past the deadline)
    assert pieces._idle is None


@SHARED
async def test_the_idle_deadline_counts_from_the_last_piece_and_still_expires(shared):
    """Pieces keep coming for longer than the idle time: no timeout; then silence: a timeout,
    and the body is given up."""
    loop = asyncio.get_running_loop()
    pieces = _pieces(loop, shared)

    async def produce():
        for _ in range(5):
            await asyncio.sleep(0.04)
            pieces.put(b"x")
    producer = asyncio.ensure_future(produce())
    got = b""
    started = loop.time()
    with pytest.raises(aiohttp.ServerTimeoutError):
        while True:
            got += await pieces.next(0.15)
    await producer
    assert got == b"xxxxx"
    assert loop.time() - started >= 0.2 + 0.15 - 0.02  # the last piece, then a whole idle time
    assert pieces._done and pieces._idle is None


@SHARED
async def test_a_look_ahead_wait_is_not_taken_for_an_idle_read(shared):
    """wait() (the hold's look-ahead) has its own timeout; the read's idle timer, still armed
    from an earlier read, leaves it alone."""
    loop = asyncio.get_running_loop()
    pieces = _pieces(loop, shared)
    loop.call_later(0.01, pieces.put, b"a")
    assert await pieces.next(0.05) == b"a"  # the read waited: its timer is armed for 0.05 s
    assert pieces._idle is not None
    assert await pieces.wait(0.15) is False  # outlives that timer; nothing arrived, no error
    pieces.put(b"b")
    assert await pieces.next(0.05) == b"b"


@SHARED
async def test_a_read_that_waits_when_the_body_is_given_up_fails_at_once(shared):
    """abort() from elsewhere (the response closed) ends a waiting read with the error now, not
    after the idle time (its timer is gone with the body)."""
    loop = asyncio.get_running_loop()
    pieces = _pieces(loop, shared)
    loop.call_later(0.05, pieces.abort)
    started = loop.time()
    with pytest.raises(aiohttp.ClientPayloadError, match="closed before its end"):
        await pieces.next(30)
    assert loop.time() - started < 5
    assert pieces._idle is None


async def test_calls_with_one_timeout_share_one_deadline_timer(monkeypatch):
    """The lean clients' head deadlines: waiters added with the same timeout come due later than
    the armed timer and leave it alone; answered ones are dropped; one still waiting at its time
    fails with TimeoutError, on time, and the timer is then set for the next one."""
    loop = asyncio.get_running_loop()
    armed = _count_idle_timers(monkeypatch, loop)
    deadlines = body.Deadlines(loop)
    start = loop.time()
    waiters = [loop.create_future() for _ in range(50)]
    when = start + 0.15
    for waiter in waiters:
        deadlines.add(waiter, when)
    for waiter in waiters[:-2]:  # answered: what a call does when its head comes
        waiter.set_result(None)
        deadlines.drop(waiter)
    assert len(armed) == 1
    with pytest.raises(asyncio.TimeoutError):
        await waiters[-2]
    assert 0.14 <= loop.time() - start < 0.5
    assert isinstance(waiters[-1].exception(), asyncio.TimeoutError)  # the same deadline, the same firing
    late = loop.create_future()
    deadlines.add(late, loop.time() + 0.05)
    with pytest.raises(asyncio.TimeoutError):
        await late
    assert len(armed) == 2 and deadlines._timer is None and deadlines._due == {}  # nothing left armed


async def test_a_shorter_deadline_added_later_fires_first():
    loop = asyncio.get_running_loop()
    deadlines = body.Deadlines(loop)
    slow, quick = loop.create_future(), loop.create_future()
    deadlines.add(slow, loop.time() + 30)
    start = loop.time()
    deadlines.add(quick, loop.time() + 0.05)
    with pytest.raises(asyncio.TimeoutError):
        await quick
    assert loop.time() - start < 1 and not slow.done()
    deadlines.drop(slow)
    assert deadlines._timer is not None and deadlines._when > loop.time() + 25  # set again for the slow one



async def test_bodies_and_heads_share_one_timer_and_a_due_alarm_runs_its_callback(monkeypatch):
    """Many bodies' idle alarms and many heads' deadlines on one Deadlines: one loop timer; a body
    given up drops its alarm; the one still waiting times out; the heads are untouched."""
    loop = asyncio.get_running_loop()
    armed = _count_idle_timers(monkeypatch, loop)
    deadlines = body.Deadlines(loop)
    heads = [loop.create_future() for _ in range(5)]
    for head in heads:
        deadlines.add(head, loop.time() + 30)
    bodies = [body.Pieces(loop, deadlines) for _ in range(20)]
    reads = [asyncio.ensure_future(b.next(0.1)) for b in bodies]
    await asyncio.sleep(0)
    for b in bodies[:-1]:
        b.put(b"x")
        b.end()
    assert [await r for r in reads[:-1]] == [b"x"] * 19
    assert all(b._idle is None for b in bodies[:-1]) and len(deadlines._calls) == 1
    with pytest.raises(aiohttp.ServerTimeoutError):
        await reads[-1]
    assert bodies[-1]._done and deadlines._calls == {}
    assert not any(h.done() for h in heads) and set(deadlines._due) == set(heads)
    assert len(armed) == 3  # the heads' timer, the earlier alarm's in its place, then the heads' again
    assert deadlines._timer is not None and deadlines._when > loop.time() + 25


async def test_an_alarm_added_again_as_it_fires_leaves_one_timer():
    """A due alarm whose callback adds itself again (a read that began after the alarm was set):
    the timer it sets is the one kept, no second timer is made after it."""
    loop = asyncio.get_running_loop()
    deadlines = body.Deadlines(loop)
    fired = []

    def again():
        fired.append(loop.time())
        if len(fired) < 3:
            deadlines.add("key", loop.time() + 0.02, again)
    deadlines.add("key", loop.time() + 0.02, again)
    timers = []
    real = loop.call_at

    def counting(when, callback, *args, **kwargs):
        handle = real(when, callback, *args, **kwargs)
        if getattr(callback, "__func__", None) is body.Deadlines._fire:
            timers.append(handle)
        return handle
    loop.call_at = counting
    try:
        await asyncio.sleep(0.15)
    finally:
        del loop.call_at
    assert len(fired) == 3 and len(timers) == 2 and deadlines._timer is None and deadlines._due == {}
    deadlines.add("key", loop.time() + 10, again)
    deadlines.drop_alarm("key")
    assert deadlines._due == {} and deadlines._calls == {}
