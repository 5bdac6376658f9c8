"""Python files rewritten in worker processes, each file bounded in time and in memory.

A pathological file (megabytes of generated code, absurd nesting) can make the parser run for
minutes and take gigabytes; with ``-j`` = cores, two such files exhaust a machine. So every file is
handed to a worker process of its own pool, and:

* **time**: a file still running after ``Bounds.file_timeout`` seconds has its worker killed;
* **memory**: each worker's address space is capped (``RLIMIT_AS``) so that its resident memory cannot
  grow past ``Bounds.max_memory_mib``; a file that needs more raises ``MemoryError`` (or, in the
  native parser, aborts the worker);
* a worker that dies on a file for any other reason (a segfault, the OOM killer) is the same case.

Such a file becomes a :class:`~transplant.results.FileResult` with status SKIPPED and the reason, a
fresh worker takes the next file, and the run goes on. Results come back in task order whatever the
order of completion, and the largest files are started first so that one big file does not finish
last on its own.

Interrupts: the pool never waits for a worker to finish a file. Ctrl-C / SIGTERM raise
``KeyboardInterrupt`` in the parent wherever it is waiting; the pool then kills its workers at once.
Workers ignore SIGINT (the terminal sends it to the whole process group) and keep the default SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from transplant.results import FileResult, Status

Task = tuple[str, str]                   # (path to read, POSIX path relative to SRC)
Outcome = tuple[FileResult, bool]        # the result, and whether the file looks like an entry script
Work = Callable[[Task], Outcome]


@dataclass(frozen=True)
class Bounds:
    """Limits per Python file (``--file-timeout``, ``--max-memory``); 0 means unbounded."""

    file_timeout: float = 120.0  # seconds of wall-clock time for one file
    max_memory_mib: int = 2048   # resident memory of one worker process


DEFAULT_BOUNDS = Bounds()
_MIB = 1 << 20


def _memory_now() -> tuple[int, int] | None:
    """(virtual size, resident size) of this process in bytes, or None where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            size, resident = handle.read().split()[:2]
    except (OSError, ValueError):
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    return int(size) * page, int(resident) * page


def _cap_memory(max_mib: int) -> None:
    """Cap the address space so that resident memory cannot grow past ``max_mib`` MiB.

    Resident memory only grows with address space, so allowing the address space to grow by the
    headroom left under the bound (bound minus what is resident now) keeps the resident size under it.
    """
    if max_mib <= 0:
        return
    try:
        import resource
    except ImportError:  # not POSIX
        return
    now = _memory_now()
    if now is None:
        return
    virtual, resident = now
    headroom = max(max_mib * _MIB - resident, 16 * _MIB)
    limit = virtual + headroom
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _quiet_stderr() -> None:
    """Send the worker's own stderr to /dev/null: the native parser prints a backtrace when it dies
    at the memory cap, and the parent already reports the file with the reason."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    os.dup2(devnull, 2)
    os.close(devnull)


def _worker_main(conn: Connection, work: Work, init: Callable[..., None], init_args: tuple[Any, ...],
                 max_memory_mib: int) -> None:
    # Ctrl-C goes to the whole process group; the parent handles it and kills the workers. A forked
    # worker must also drop the parent's SIGTERM handler (the CLI's), which is meant for the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    init(*init_args)
    _quiet_stderr()
    _cap_memory(max_memory_mib)
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        index, task = item
        try:
            outcome = work(task)
        except MemoryError:
            outcome = None
        try:
            conn.send((index, outcome))
        except MemoryError:
            conn.send((index, None))
        if outcome is None:
            return  # the heap may be left fragmented near the cap: a fresh worker takes the next file


class _Worker:
    def __init__(self, context: Any, work: Work, init: Callable[..., None], init_args: tuple[Any, ...],
                 max_memory_mib: int) -> None:
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=_worker_main, args=(child, work, init, init_args, max_memory_mib),
                                       daemon=True)
        # Blocked across the fork: the child must not run the parent's handlers before it sets its own.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.close()
        self.index: int | None = None  # the task it is working on
        self.started = 0.0
        self.out_of_memory = False

    def give(self, index: int, task: Task) -> None:
        self.index, self.started = index, time.monotonic()
        self.conn.send((index, task))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        """Ask an idle worker to exit; kill it if it does not within a moment."""
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(2.0)
        self.kill()


class BoundedPool:
    """Run ``work`` over ``tasks`` in up to ``jobs`` workers; iterate the outcomes in task order."""

    def __init__(self, tasks: Sequence[Task], work: Work, *, init: Callable[..., None], init_args: tuple[Any, ...],
                 jobs: int, bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.tasks = list(tasks)
        self.work, self.init, self.init_args = work, init, init_args
        self.jobs = max(1, min(jobs, len(self.tasks)))
        self.bounds = bounds
        self.context = multiprocessing.get_context()
        self.workers: list[_Worker] = []
        self._queue: deque[int] | None = None

    def start(self) -> None:
        """Start the workers on the first (largest) files; iterating starts them too if needed."""
        if self._queue is not None:
            return
        self._queue = deque(sorted(range(len(self.tasks)), key=lambda i: (-_size(self.tasks[i][0]), i)))
        for _ in range(self.jobs if self.tasks else 0):
            self._spawn()
        self._dispatch()

    def close(self) -> None:
        """Kill every worker at once (an interrupt or an error must not wait for a file to finish)."""
        for worker in self.workers:
            worker.kill()
        self.workers = []

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Outcome]:
        try:
            yield from self._run()
        finally:
            self.close()

    def _dispatch(self) -> None:
        assert self._queue is not None
        for worker in self.workers:
            if worker.index is None and self._queue:
                index = self._queue.popleft()
                worker.give(index, self.tasks[index])

    def _spawn(self) -> _Worker:
        worker = _Worker(self.context, self.work, self.init, self.init_args, self.bounds.max_memory_mib)
        self.workers.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self.workers.remove(worker)

    def _run(self) -> Iterator[Outcome]:
        self.start()
        queue = self._queue
        assert queue is not None
        done: dict[int, Outcome] = {}
        following = 0
        timeout = self.bounds.file_timeout
        while following < len(self.tasks):
            self._dispatch()
            while following in done:
                yield done.pop(following)
                following += 1
            busy = [w for w in self.workers if w.index is not None]
            if not busy:
                continue
            wait_for = None
            if timeout > 0:
                wait_for = max(0.0, min(w.started for w in busy) + timeout - time.monotonic())
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], wait_for)
            for worker in busy:
                index = worker.index
                assert index is not None
                if worker.conn in ready or worker.process.sentinel in ready:
                    outcome = self._receive(worker)
                    if outcome is not None:
                        done[index] = outcome
                        continue
                    done[index] = self._skipped(index, self._death_reason(worker))
                elif timeout > 0 and time.monotonic() - worker.started >= timeout:
                    done[index] = self._skipped(index, f"took longer than {timeout:g} s (--file-timeout); "
                                                       "copied unchanged")
                else:
                    continue
                self._retire(worker)
                if queue:
                    self._spawn()
        for worker in list(self.workers):
            worker.stop()
        self.workers = []

    def _receive(self, worker: _Worker) -> Outcome | None:
        """The worker's answer, or None if it died or gave up on the file (out of memory)."""
        try:
            if not worker.conn.poll():
                return None
            index, outcome = worker.conn.recv()
        except (EOFError, OSError):
            return None
        if outcome is None:
            worker.out_of_memory = True
            return None
        worker.index = None
        return outcome

    def _death_reason(self, worker: _Worker) -> str:
        bound = self.bounds.max_memory_mib
        if worker.out_of_memory:
            return f"needs more than {bound} MiB of memory (--max-memory); copied unchanged"
        worker.process.join(1.0)
        code = worker.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        hint = f", probably over the {bound} MiB bound (--max-memory)" if bound > 0 else ""
        return f"the worker process died on this file ({how}{hint}); copied unchanged"

    def _skipped(self, index: int, reason: str) -> Outcome:
        return FileResult(path=self.tasks[index][1], status=Status.SKIPPED, reason=reason), False


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
