"""One server-sent-event loop for everything the lab follows: a training, a study, a sweep.

A job (:class:`~aelab.serve.training.Job`, :class:`~aelab.serve.studies.StudyJob`) keeps every
message it sends in ``events``, under ``lock``, and says where it stands in ``snapshot()``; a
``serial`` tells one job of a path from the next (a run paused and resumed is a new job). A page
that connects gets the current job's snapshot, then its events from that point on, polled; when
the path gets a new job the page gets that job's snapshot and follows it. A closed tab ends only
this loop (the job trains on); a stopping server ends it with a ``server-stopped`` state.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Any, Callable, Optional

from starlette.requests import Request
from starlette.responses import StreamingResponse

#: seconds between polls of a job's events, and of silence before a comment keeps proxies open
POLL_S = 0.15
KEEPALIVE_S = 15.0


def follow(request: Request, current: Callable[[], Any], closing: threading.Event, *,
           before: Optional[dict] = None, poll: float = POLL_S) -> StreamingResponse:
    """The event stream of the job ``current()`` returns (None: none yet, or none any more).
    ``before``: a snapshot sent first when there is no job at the start (a run on disk)."""

    async def stream():
        yield "retry: 2000\n\n"
        serial, seen, quiet = None, 0, 0.0
        if current() is None and before is not None:
            yield sse(before)
        job = None
        while not closing.is_set():
            now = current()
            if now is not None and now.serial != serial:  # a new job for this path (started, resumed)
                job, serial = now, now.serial
                with job.lock:
                    seen = len(job.events)
                    snap = job.snapshot()
                yield sse(snap)
            if job is not None:
                with job.lock:
                    new = job.events[seen:]
                    seen += len(new)
                for msg in new:
                    yield sse(msg)
                if new:
                    quiet = 0.0
            if await request.is_disconnected():
                return
            await asyncio.sleep(poll)
            quiet += poll
            if quiet >= KEEPALIVE_S:
                quiet = 0.0
                yield ": still here\n\n"
        if job is not None:  # what the job said while the server was stopping
            with job.lock:
                new = job.events[seen:]
            for msg in new:
                yield sse(msg)
        yield sse({"type": "state", "state": "server-stopped", "message": "the server stopped"})

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse(msg: dict) -> str:
    """One server-sent event; a NaN or infinite loss travels as null (JSON has no NaN)."""
    return f"event: {msg['type']}\ndata: {json.dumps(_finite(msg), allow_nan=False, default=str)}\n\n"


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v
