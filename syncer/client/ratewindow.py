"""The rate-window rule as pure functions of seconds: one rule for the in-process limiter and
for the team budget booked in PostgreSQL (which converts its timestamps at its boundary).

The API allows `requests` calls per `period` per team and endpoint, counted when a request
*arrives*. So a new grant waits until the `requests`-th latest one is `period` old, and until
a 429's `Retry-After` has passed: no window of `period` then ever holds more than `requests`.

When is a grant counted? The server counts a request when it arrives, the client lets it go
earlier, and the two drift apart by any amount (a slow connect, a busy event loop on either
side). So a grant is *pending* until the client knows the server counted it (its answer
began, or the attempt failed) and *settled* from then on, at that instant, which is never
earlier than the server's count. A pending grant counts as "now", since the server may count
it at any moment, for at most `in_flight` seconds after it was let go: by then its process
has had its answer, given up, or died. A grant let go `period` after another's count can
therefore never share the server's window with it, however late either was.

The margin. What settled grants cannot absorb is the server's clock or window boundaries
running slightly differently from ours, so the window is kept wider than the API's by
`margin(period)`: 5% of the period, at least a quarter second (3 s on the API's 60 s).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

#: A grant as the rule sees it: (when it was let go, or settled; whether it is settled).
GrantTime = tuple[float, bool]


def margin(period: float) -> float:
    """Seconds added to the API's period: 5% of it, at least a quarter second."""
    return max(0.05 * period, 0.25)


def widened(period: float) -> float:
    """The window the budget keeps for an API period of `period` seconds."""
    return period + margin(period)


def settle_poll(period: float) -> float:
    """How often a waiter looks again while another process's request is in flight."""
    return min(1.0, max(0.05, period / 20))


def counted_at(at: float, settled: bool, now: float, in_flight: float = math.inf) -> float:
    """When the server counts a grant at the latest, as far as is known at `now`."""
    if settled:
        return at
    return min(max(at, now), at + in_flight)


def still_counts(counted: float, now: float, period: float) -> bool:
    """Whether a grant counted at `counted` can still hold a new one back."""
    return counted > now - period


@dataclass(frozen=True, slots=True)
class Wait:
    """How long before one more grant fits, and why."""

    seconds: float  #: until the grant fits (0 or less: it fits now)
    on_answer: bool  #: a request in flight holds it back: only its answer can shorten the wait


def next_wait(
    grants: Iterable[GrantTime],
    not_before: float,
    now: float,
    requests: int,
    period: float,
    in_flight: float = math.inf,
) -> Wait:
    """The wait before a grant at `now` keeps every window of `period` within `requests`.

    When the binding grant is one in flight, counted as "now", the wait is a whole period that
    moves with the clock: only that request's answer can end it, so `on_answer` is set and the
    waiter should watch for the answer rather than sleep on the clock.
    """
    seconds, on_answer = not_before - now, False
    counted = []
    flying = False
    for at, settled in grants:
        time = counted_at(at, settled, now, in_flight)
        counted.append(time)
        flying = flying or (not settled and time >= now)
    if len(counted) >= requests:
        binding = sorted(counted)[-requests]
        seconds = max(seconds, binding + period - now)
        on_answer = flying and binding >= now
    return Wait(max(seconds, 0.0), on_answer)
