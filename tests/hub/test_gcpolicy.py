"""The collector policy: survivors of older passes are frozen, a thaw gives them back."""

from __future__ import annotations

import asyncio
import gc

from gadget.hub.gcpolicy import FreezeSurvivors


async def test_survivors_of_older_passes_are_frozen_until_a_thaw() -> None:
    policy = FreezeSurvivors(thaw_every_s=3600, young_every_s=3600)  # no clock passes
    policy.start()
    try:
        kept = [[i] for i in range(1000)]  # containers the collector tracks
        gc.collect(1)
        await asyncio.sleep(0)  # the freeze runs on the loop, after the pass
        assert policy.freezes == 1
        assert gc.get_freeze_count() >= len(kept)
        more = [[i] for i in range(1000)]
        gc.collect(2)
        await asyncio.sleep(0)
        assert policy.freezes == 2
        assert gc.get_freeze_count() >= len(kept) + len(more)
        gc.collect(0)  # the youngest generation's passes freeze nothing
        await asyncio.sleep(0)
        assert policy.freezes == 2
    finally:
        await policy.close()
        gc.unfreeze()
    assert policy._callback not in gc.callbacks
    gc.collect(2)
    await asyncio.sleep(0)
    assert policy.freezes == 2


async def test_a_thaw_unfreezes() -> None:
    policy = FreezeSurvivors(thaw_every_s=0.01, young_every_s=3600)
    policy.start()
    try:
        assert gc.get_freeze_count() > 0
        for _ in range(200):
            if gc.get_freeze_count() == 0:
                break
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() == 0
    finally:
        await policy.close()


async def test_the_young_generations_are_collected_by_the_clock() -> None:
    policy = FreezeSurvivors(thaw_every_s=3600, young_every_s=0.005, middle_every=3)
    passes: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            passes.append(info["generation"])

    gc.callbacks.append(seen)
    policy.start()
    try:
        for _ in range(400):
            if policy.timed[1] >= 2:
                break
            await asyncio.sleep(0.005)
        assert policy.timed[0] >= 4 and policy.timed[1] >= 2
        assert passes.count(1) >= 2  # the middle passes happened, and froze their survivors
        await asyncio.sleep(0)
        assert policy.freezes >= 2
    finally:
        gc.callbacks.remove(seen)
        await policy.close()
        gc.unfreeze()
    done = list(policy.timed)
    await asyncio.sleep(0.03)
    assert policy.timed == done  # closed: no more passes by the clock
