"""``open_task_set`` and ``settled``: every task has an owner, and failures are not lost."""

from __future__ import annotations

import asyncio

import pytest

from kernel.client._tasks import Outcome, open_task_set, settled


def test_tasks_still_running_are_cancelled_when_the_owner_ends() -> None:
    async def scenario() -> None:
        forever = asyncio.Event()
        async with open_task_set() as tasks:
            task = tasks.spawn(forever.wait())
            assert len(tasks) == 1
            await asyncio.sleep(0)  # it has started waiting
        assert task.cancelled()
        with pytest.raises(RuntimeError):
            tasks.spawn(forever.wait())  # the owner is done: no new tasks

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_the_owners_exception_leaves_as_itself() -> None:
    async def scenario() -> None:
        async with open_task_set() as tasks:
            tasks.spawn(asyncio.Event().wait())
            raise KeyError("mine")
        raise AssertionError("unreachable")

    with pytest.raises(KeyError, match="mine"):
        asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_failing_task_brings_its_owner_down() -> None:
    async def fail() -> None:
        raise ValueError("bug")

    async def scenario() -> None:
        async with open_task_set() as tasks:
            tasks.spawn(fail())
            await asyncio.Event().wait()  # cancelled by the failure

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert info.group_contains(ValueError, match="bug")


def test_settled_turns_a_failure_into_an_outcome() -> None:
    async def fail() -> int:
        raise ValueError("expected")

    async def scenario() -> tuple[Outcome[int], Outcome[int]]:
        async with open_task_set() as tasks:
            good = tasks.spawn(settled(asyncio.sleep(0, 7)))
            bad = tasks.spawn(settled(fail()))
            return await good, await bad

    good, bad = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert (good.value, good.error, good.unwrap()) == (7, None, 7)
    assert isinstance(bad.error, ValueError)
    with pytest.raises(ValueError, match="expected"):
        bad.unwrap()
