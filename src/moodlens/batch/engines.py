"""Where chunks run: a process pool on this machine (``local``) or a Ray cluster (``ray``).

Both keep two chunks per worker in flight (so a worker never waits for the driver between
chunks), hand results back as they finish, and run a chunk again when the worker process
running it dies (up to :data:`TRIES` times in all; then the chunk is reported as failed). Each
worker process loads the models once (:func:`~moodlens.batch.analyse.worker_recognizer`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from moodlens.batch.analyse import analyse_chunk
from moodlens.batch.plan import Chunk, Settings
from moodlens.errors import MoodLensError

TRIES = 4
IN_FLIGHT = 2  # chunks per worker
ENGINES = ("local", "ray")
# ray.init retries an address where no cluster answers for ever, deaf to Ctrl+C and SIGTERM.
CONNECT_TIMEOUT_S = 5.0


class LocalEngine:
    """``workers`` processes on this machine (default: one per core)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def run(self, chunks: list[Chunk], settings: Settings) -> Iterator[tuple[Chunk, dict]]:
        queue, deaths = deque(chunks), Counter()
        while queue:
            # spawn, not fork: the caller may hold onnxruntime and OpenCV thread pools, which a
            # forked child inherits in a locked state.
            with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                running: dict = {}
                broken = False
                while running or (queue and not broken):
                    while queue and not broken and len(running) < IN_FLIGHT * self.workers:
                        chunk = queue.popleft()
                        running[pool.submit(analyse_chunk, chunk, settings)] = chunk
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        chunk = running.pop(future)
                        try:
                            yield chunk, future.result()
                        except BrokenProcessPool:  # a worker died; every chunk in flight is lost with the pool
                            broken = True
                            deaths[chunk] += 1
                            if deaths[chunk] < TRIES:
                                queue.appendleft(chunk)
                            else:
                                yield chunk, {"error": f"the worker process died {TRIES} times analysing it"}

    def close(self) -> None:
        pass


class RayEngine:
    """Ray tasks on the cluster at ``address`` (``"auto"``: the one started on this machine with
    ``ray start``), or on a local Ray instance of ``workers`` CPUs that this engine starts and
    stops. Ray itself runs a task again when its worker process dies."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise MoodLensError("--engine ray needs the `distributed` extra: pip install 'moodlens[distributed]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            if address:
                check_reachable(address)
            try:
                ray.init(address=address, num_cpus=(workers or os.cpu_count()) if address is None else None,
                         include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise MoodLensError(f"cannot start or reach the Ray cluster{f' at {address}' if address else ''}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.task = ray.remote(num_cpus=1, max_retries=TRIES - 1)(analyse_chunk)

    def run(self, chunks: list[Chunk], settings: Settings) -> Iterator[tuple[Chunk, dict]]:
        queue, running = deque(chunks), {}
        while queue or running:
            while queue and len(running) < IN_FLIGHT * self.workers:
                chunk = queue.popleft()
                running[self.task.remote(chunk, settings)] = chunk
            ready, _ = self.ray.wait(list(running), num_returns=1)
            for ref in ready:
                chunk = running.pop(ref)
                try:
                    result = self.ray.get(ref)
                except self.ray.exceptions.RayError as exc:  # its worker died TRIES times
                    result = {"error": f"failed on the cluster {TRIES} times: {type(exc).__name__}"}
                yield chunk, result

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def check_reachable(address: str) -> None:
    """Raise a one-line error unless something accepts connections at ``address`` (``host:port`` or
    ``ray://host:port``) within :data:`CONNECT_TIMEOUT_S`; ``auto`` is left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise MoodLensError(f"cannot reach the Ray cluster at {address}: {why}") from None


def create_engine(name: str = "local", workers: int | None = None, address: str | None = None):
    if name == "local":
        if address:
            raise MoodLensError("--address is for --engine ray")
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(workers, address)
    raise MoodLensError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
