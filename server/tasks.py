"""Stopping a background task of a call: cancel it, and wait until it has stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Optional


async def cancel_and_wait(task: Optional[asyncio.Task]) -> None:
    """Cancel `task` (None: nothing to stop) and return once it has run its cleanup."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
