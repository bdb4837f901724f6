"""The token bucket behind the per-socket event rate (sockets/rate.py), on a given clock."""

from __future__ import annotations

from gadget.hub.sockets.rate import Bucket, Verdict


def test_a_burst_passes_then_the_rate_then_strikes_disconnect() -> None:
    bucket = Bucket(rate=10, burst=5, max_strikes=3)
    now = bucket.stamp
    assert [bucket.take(now) for _ in range(5)] == [Verdict.PASS] * 5
    assert [bucket.take(now) for _ in range(4)] == [Verdict.REFUSE] * 3 + [Verdict.DISCONNECT]


def test_a_pass_forgives_earlier_strikes_and_tokens_refill_up_to_the_burst() -> None:
    bucket = Bucket(rate=10, burst=2, max_strikes=2)
    now = bucket.stamp
    bucket.take(now), bucket.take(now)
    assert bucket.take(now) is Verdict.REFUSE and bucket.strikes == 1
    assert bucket.take(now + 0.15) is Verdict.PASS and bucket.strikes == 0  # a token back
    later = now + 3600  # an hour idle refills to the burst, not beyond
    assert [bucket.take(later) for _ in range(3)] == [Verdict.PASS, Verdict.PASS, Verdict.REFUSE]
