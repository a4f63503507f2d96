"""An answer's body as it arrives, for the lean clients (wire.py over sockets, curl_lean.py over curl).

The transport pushes pieces in (`put`, `end`, `fail`); the reader takes everything that arrived since
its last read in one piece (`next`, as aiohttp's iter_any), or the rest at once (`rest`). `ready()` and
`wait()` let relay.hold_events look ahead without reading and without a task. A subclass says how
reading resumes once the reader has caught up (`_caught_up`) and how the rest is given up (`abort`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

import aiohttp

HIGH_WATER = 256 * 1024   # unread body bytes that pause the transport


def _settle(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


class Deadlines:
    """Deadlines of many waiters on one loop timer: a waiter still waiting at its time fails with
    TimeoutError (as `expire`), or has its callback run when it was added with one (an alarm). A
    call adds its waiter and drops it when answered, a dict entry each, where a loop timer per call
    is an object, a heap push and a cancel (and the cancelled timer stays in the heap until it
    comes due). The timer is set for the earliest deadline; calls with the same timeout come due
    later and leave it alone, and answered ones are skipped when it fires."""

    __slots__ = ("loop", "_due", "_calls", "_timer", "_when")
    EARLY = 0.001  # a timer may fire a little before its time: deadlines this close count as due

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: dict = {}  # waiter or alarm key → loop time
        self._calls: dict = {}  # alarm key → what to run when due
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0

    def add(self, waiter, when: float, callback: Callable[[], None] | None = None) -> None:
        """Fail `waiter` (a future) at loop time `when` unless it is done, or dropped, by then; with
        `callback`, `waiter` is any key and the callback runs then instead (drop it with drop_alarm)."""
        self._due[waiter] = when
        if callback is not None:
            self._calls[waiter] = callback
        self._run_by(when)

    def _run_by(self, when: float) -> None:
        """The timer set to fire by `when`: kept if it fires sooner, else replaced."""
        if self._timer is None or when < self._when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._when = self.loop.call_at(when, self._fire), when

    def drop(self, waiter: asyncio.Future) -> None:
        self._due.pop(waiter, None)

    def drop_alarm(self, key) -> None:
        self._due.pop(key, None)
        self._calls.pop(key, None)

    def _fire(self) -> None:
        self._timer = None
        now = self.loop.time() + self.EARLY
        due = [waiter for waiter, when in self._due.items() if when <= now]
        for waiter in due:
            del self._due[waiter]
            call = self._calls.pop(waiter, None) if self._calls else None
            if call is None:
                expire(waiter)
            else:
                call()  # may add again (and so set the timer)
        if self._due:
            self._run_by(min(self._due.values()))


class Pieces:
    """The body pieces of one answer, kept until read; the end or an error after the last one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, alarms: Deadlines | None = None) -> None:
        self.loop = loop
        self._alarms = alarms  # the owner's shared timer for the idle deadline, else a timer of its own
        self._pieces: deque = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        # next()'s idle deadline: one timer per body, moved on lazily, not one per wait (a stream
        # of paced events waits once an event; a timer each cost more than the event's own work)
        self._reading: asyncio.Future | None = None  # the waiter of a next() that waits
        self._deadline = 0.0
        self._idle: asyncio.TimerHandle | bool | None = None  # the timer armed (True: the alarm set)
        self._idle_at = 0.0  # when the armed timer fires

    # -- the transport's side
    def put(self, data: bytes) -> bool:
        """Keep a piece; True when the unread bytes passed HIGH_WATER (the transport should pause)."""
        self._pieces.append(data)
        self._size += len(data)
        self._wake()
        return self._size > HIGH_WATER

    def end(self) -> None:
        self._done = True
        self._disarm()
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._done:
            self._error, self._done = exc, True
            self._disarm()
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the reader's side
    def ready(self) -> bool:
        """True when next() returns without waiting: something arrived, or the answer ended."""
        return bool(self._pieces) or self._done

    async def wait(self, timeout: float) -> bool:
        """Wait at most `timeout` s until next() would return at once; whether it would now.

        Nothing is read and nothing is cancelled, so a caller can give up waiting and read on later.
        """
        if not self._pieces and not self._done:
            self._waiter = waiter = self.loop.create_future()
            timer = self.loop.call_later(max(timeout, 0.0), _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.ready()

    async def next(self, idle_timeout: float) -> bytes | None:
        """What arrived since the last call (waiting for something), or None at the end."""
        while not self._pieces:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._waiter = self._reading = waiter = self.loop.create_future()
            self._deadline = deadline = self.loop.time() + idle_timeout
            if self._idle is None or self._idle_at > deadline:  # none armed, or armed too late
                self._arm(deadline)
            try:
                await waiter
            except asyncio.TimeoutError:
                self.abort()
                raise aiohttp.ServerTimeoutError("Timeout on reading data from socket") from None
            finally:
                self._waiter = self._reading = None
        # everything that arrived since the last read, in one piece: a burst of small chunks costs
        # the relay one write, not one per chunk
        piece = b"".join(self._pieces)  # one piece comes back as it is, not copied
        self._pieces.clear()
        self._size = 0
        self._caught_up()
        return piece

    async def rest(self, idle_timeout: float) -> bytes:
        """Everything still to come, as one bytes (no async generator on the way)."""
        parts = []
        while (piece := await self.next(idle_timeout)) is not None:
            parts.append(piece)
        return b"".join(parts)  # a single piece comes back as it is

    def _caught_up(self) -> None:
        """Everything that arrived was read: a paused transport may go on."""

    def _arm(self, when: float) -> None:
        if self._alarms is not None:  # an entry in the owner's alarms (replacing any earlier one)
            self._alarms.add(self, when, self._idle_check)
            self._idle, self._idle_at = True, when
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle, self._idle_at = self.loop.call_at(when, self._idle_check), when

    def _idle_check(self) -> None:
        """The idle timer: a read that has waited its whole idle time fails; one that began later
        (the deadline moved on since the timer was armed) gets the timer again."""
        self._idle = None
        waiter = self._reading
        if waiter is None or waiter.done():
            return  # nobody waits: the next wait arms it again
        if self._deadline > self.loop.time():
            self._arm(self._deadline)
        else:
            waiter.set_exception(asyncio.TimeoutError())

    def _disarm(self) -> None:
        """The body is over: its timer must not keep it in the loop's heap until it is due."""
        if self._idle is not None:
            if self._alarms is not None:
                self._alarms.drop_alarm(self)
            else:
                self._idle.cancel()
            self._idle = None

    def abort(self) -> None:
        """Give up on the rest; a read that waits fails now (with no timer left, it would not)."""
        self._disarm()
        if not self._done:
            self._done = True
            self._error = aiohttp.ClientPayloadError("response closed before its end")
            self._wake()
