"""Acknowledgements first (bot/foreground.py): after-ack work waits for the Slack requests
still awaiting their answer, and never longer than its turn."""

import asyncio

from bot.debounce import Debouncer
from bot.foreground import Foreground


async def test_nothing_waits_when_no_request_awaits_its_answer() -> None:
    foreground = Foreground(patience=10)
    await asyncio.wait_for(foreground.step_aside(), 0.5)


async def test_a_step_waits_until_the_request_is_answered() -> None:
    foreground = Foreground(patience=10)
    with foreground.answering():
        step = asyncio.create_task(foreground.step_aside())
        await asyncio.sleep(0.05)
        assert not step.done(), "the step went ahead of a request awaiting its answer"
    await asyncio.wait_for(step, 0.5)


async def test_under_a_sustained_burst_steps_still_advance_one_per_turn() -> None:
    foreground = Foreground(patience=0.05)
    loop = asyncio.get_running_loop()
    with foreground.answering():
        started = loop.time()
        done: list[float] = []

        async def step() -> None:
            await foreground.step_aside()
            done.append(loop.time() - started)

        await asyncio.wait_for(asyncio.gather(*(step() for _ in range(4))), 2)
    # One step per turn: the fourth waited for the three before it.
    assert sorted(done)[-1] >= 4 * 0.05 * 0.9
    assert sorted(done)[0] < 4 * 0.05


async def test_nested_requests_keep_the_foreground_busy_until_the_last_is_answered() -> None:
    foreground = Foreground(patience=10)
    first, second = foreground.answering(), foreground.answering()
    first.__enter__()
    second.__enter__()
    step = asyncio.create_task(foreground.step_aside())
    first.__exit__(None, None, None)
    await asyncio.sleep(0.05)
    assert not step.done()
    second.__exit__(None, None, None)
    await asyncio.wait_for(step, 0.5)


async def test_debounced_work_steps_aside_for_the_foreground() -> None:
    foreground = Foreground(patience=10)
    ran: list[int] = []

    async def work(key: int) -> None:
        ran.append(key)

    debouncer = Debouncer(work, delay=0, foreground=foreground)
    with foreground.answering():
        debouncer.poke(7)
        await asyncio.sleep(0.05)
        assert ran == []
    await asyncio.sleep(0.05)
    assert ran == [7]
    await debouncer.stop(1)
