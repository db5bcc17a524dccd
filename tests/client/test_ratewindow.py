"""The rate-window rule shared by the in-process limiter and the team budget, on plain numbers."""

from __future__ import annotations

import math

import pytest

from syncer.client.ratewindow import (
    GrantTime,
    counted_at,
    margin,
    next_wait,
    settle_poll,
    still_counts,
    widened,
)

INF = math.inf


def settled(*times: float) -> list[GrantTime]:
    return [(t, True) for t in times]


@pytest.mark.parametrize(
    ("grants", "not_before", "now", "expected"),
    [
        ([], -INF, 0, 0),  # nothing granted: now
        (settled(0, 1), -INF, 2, 2),  # room left in the window: now
        (settled(0, 1, 2, 3, 4), -INF, 5, 60),  # full: when the oldest expires
        (settled(0, 1, 2, 3, 4), -INF, 70, 70),  # full but expired: now
        (settled(10, 20, 30, 40, 50), -INF, 55, 70),  # oldest of the last five
        ([], 30, 5, 30),  # a 429's Retry-After holds everyone back
        (settled(0, 1, 2, 3, 4), 90, 5, 90),  # the later of the two wins
        (settled(0, 61, 62, 63, 64, 65), -INF, 66, 121),  # only the last five
        (settled(4, 3, 2, 1, 0), -INF, 5, 60),  # in any order
    ],
)
def test_next_wait_keeps_every_window_within_the_limit(
    grants: list[GrantTime], not_before: float, now: float, expected: float
) -> None:
    wait = next_wait(grants, not_before, now, 5, 60.0)
    assert now + wait.seconds == expected
    assert not wait.on_answer, "settled grants never make the wait depend on an answer"


def test_a_pending_grant_counts_as_now_and_only_its_answer_ends_the_wait() -> None:
    wait = next_wait([(0.0, False)], -INF, 30.0, 1, 10.0)
    assert wait.seconds == 10.0  # a whole period from now, moving with the clock
    assert wait.on_answer


def test_a_pending_grant_that_is_not_binding_does_not_hold_the_wait() -> None:
    wait = next_wait([(0.0, True), (5.0, False)], -INF, 6.0, 2, 10.0)
    assert wait.seconds == pytest.approx(4.0)  # the settled one at 0 binds: 10 - 6
    assert not wait.on_answer


def test_a_penalty_longer_than_the_window_is_slept_on_the_clock() -> None:
    wait = next_wait([(0.0, False)], 100.0, 30.0, 1, 10.0)
    assert wait.seconds == 70.0
    assert wait.on_answer, "the answer may still come first; then the penalty alone is left"


def test_a_settled_grant_counts_from_its_answer() -> None:
    # let go at 0, answered at 4: a period from 4, not from 0
    assert next_wait([(4.0, True)], -INF, 4.0, 1, 10.0).seconds == 10.0


@pytest.mark.parametrize(
    ("at", "is_settled", "now", "in_flight", "expected"),
    [
        (3.0, True, 10.0, INF, 3.0),  # settled: when its answer began
        (3.0, False, 10.0, INF, 10.0),  # pending: now (the server may count it any moment)
        (3.0, False, 10.0, 5.0, 8.0),  # pending past the in-flight bound: at the bound
        (12.0, False, 10.0, INF, 12.0),  # booked just ahead of now (a unique booking)
    ],
)
def test_counted_at(
    at: float, is_settled: bool, now: float, in_flight: float, expected: float
) -> None:
    assert counted_at(at, is_settled, now, in_flight) == expected


def test_a_pending_grant_past_its_bound_no_longer_holds_anyone_back() -> None:
    grants = [(0.0, False)]
    assert next_wait(grants, -INF, 0.5, 1, 0.2, in_flight=1.0).on_answer
    later = next_wait(grants, -INF, 1.1, 1, 0.2, in_flight=1.0)
    assert later.seconds == pytest.approx(0.1)  # counted at 1.0, free at 1.2
    assert not later.on_answer


def test_still_counts_within_one_period() -> None:
    assert still_counts(50.1, 110.0, 60.0)
    assert not still_counts(50.0, 110.0, 60.0)


def test_one_margin_grows_with_the_period() -> None:
    assert margin(60) == pytest.approx(3.0)
    assert margin(1) == pytest.approx(0.25)
    assert widened(60) == pytest.approx(63.0)


def test_settle_poll_is_bounded() -> None:
    assert settle_poll(60) == 1.0
    assert settle_poll(0.2) == 0.05
    assert settle_poll(2.0) == pytest.approx(0.1)
