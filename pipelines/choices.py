"""The choices of one request (`n` > 1) read side by side, their deltas merged as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

from pipelines.types import Delta, DeltaKind, Output

if TYPE_CHECKING:
    from pipelines.pipeline import GenerationPipeline, PipelineContext
    from pipelines.result import PipelineResult

__all__ = ["merged_choices"]


async def merged_choices(
    pipeline: GenerationPipeline,
    contexts: list[PipelineContext],
    ended: Callable[[PipelineContext], PipelineResult],
) -> AsyncGenerator[Delta, None]:
    """The deltas of every choice as they come, each choice read by a task of its own.

    One provider call opens all choices (a batching engine reads the prompt once). When a
    choice ends, `ended` finalizes it and a `FINISH` delta says so: a client reading the
    stream learns of each choice's end as it happens."""
    ctx = contexts[0]
    outputs = ctx.provider.generate_choices(ctx.prompt, [c.params for c in contexts], ctx.cancel)
    queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()

    async def pump(c: PipelineContext, output: AsyncGenerator[Output, None]) -> None:
        try:
            async for delta in pipeline.stream(c, output):
                queue.put_nowait(delta)
            if not c.cancel.cancelled:
                result = ended(c)
                queue.put_nowait(Delta(kind=DeltaKind.FINISH, choice=c.index, finish=result.finish_reason))
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(None)

    tasks = [asyncio.ensure_future(pump(c, o)) for c, o in zip(contexts, outputs, strict=True)]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        # One choice failed or the reader left: the others end too.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for output in outputs:
            await output.aclose()  # a choice whose task never started still lets go
