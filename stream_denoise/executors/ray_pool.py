"""Ray executor: a pool of actors, each holding one model, fed numpy batches.

Batches travel as one ``(N, H, W, 3)`` uint8 array each way (Ray moves NumPy arrays
through its object store without pickling per frame). The driver keeps at most
``in_flight`` batches per actor outstanding, so a slow sink or source bounds memory, and
hands results back strictly in submission order.

Fault tolerance is explicit rather than left to Ray's task retries, because the pool has
to know which batches a dead actor took with it: a batch whose actor dies (killed, out
of memory, node lost) goes to another actor, the dead one is replaced (up to
``max_restarts`` replacements per pool), and a batch that fails ``batch_retries + 1``
times ends the run naming its frames. Results are keyed by submission, so a retried
batch can never appear twice.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ray
from ray._private import ray_constants
from ray.exceptions import RayActorError, RayError

from ..config import ExecutorConfig
from ..errors import WorkerError
from ..frame import Batch, BatchResult
from . import Executor, ModelFactory

log = logging.getLogger(__name__)


def _not_the_sigterm_note(record: logging.LogRecord) -> bool:
    """Drops Ray's warning that ``ray.init`` off the main thread leaves SIGTERM alone: the
    CLI runs the work off the main thread on purpose (``cli._Signals``), and SIGTERM is
    its own (a drain; Ray's handler would exit on the spot)."""
    return "SIGTERM handler is not set" not in record.getMessage()


class _Worker:
    """The actor: builds the model once where it runs (CUDA when Ray gave it a GPU)."""

    def __init__(self, factory: ModelFactory, threads: int) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.model = factory()

    def process(self, images: Any, attention: bool) -> tuple[Any, Any]:
        result = self.model.process(images, attention=attention)
        return result.images, result.attention

    def ready(self) -> bool:
        return True


@dataclass
class _Task:
    batch: Batch
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    result: BatchResult | None = None


class RayExecutor(Executor):
    """A pool of ``config.workers`` actors sharing one queue of batches.

    Starts a local Ray sized to this machine when ``config.address`` is None and Ray is
    not running yet (and stops it on close); ``"auto"`` or ``"ray://host:port"`` joins a
    cluster.
    """

    def __init__(self, factory: ModelFactory, config: ExecutorConfig) -> None:
        self.config = config
        self._owns_ray = False
        if not ray.is_initialized():
            logging.getLogger("ray._private.worker").addFilter(_not_the_sigterm_note)
            # Ray's C++ core would turn this process's SIGTERM into an abort 3 s later
            # (absl's failure signal handler); SIGTERM is the CLI's drain. Its workers keep it.
            ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
            try:
                ray.init(address=config.address, num_cpus=None if config.address else os.cpu_count(),
                         logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = config.address or "a new local instance"
                raise WorkerError(f"cannot start or join Ray at {where}: {e}") from None
            self._owns_ray = True
        gpu = config.gpus_per_worker > 0
        threads = 0 if gpu else max(1, int(config.cpus_per_worker))
        # A GPU actor serves its in-flight batches on as many threads, each on its own CUDA
        # stream, so one batch's copies overlap another's compute; a CPU actor's cores are
        # already busy with one batch.
        self._actor_cls = ray.remote(_Worker).options(
            num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker, max_restarts=0,
            max_concurrency=config.in_flight if gpu else 1)
        self._factory = factory
        self._threads = threads
        self._lock = threading.Lock()
        self._restarts = 0
        self._actors: list[Any] = [self._spawn() for _ in range(config.workers)]
        self._load = [0] * config.workers
        self._slots = threading.BoundedSemaphore(config.workers * config.in_flight)
        try:  # a model that cannot load fails here, once, not on every batch
            ray.get([a.ready.remote() for a in self._actors])
        except RayError as e:
            self.close()
            raise WorkerError(f"Ray workers could not load the model: {_cause(e)}") from None

    @property
    def restarts(self) -> int:
        """Dead actors replaced so far."""
        return self._restarts

    @property
    def actors(self) -> list[Any]:
        """The live actor handles (tests kill one to check recovery)."""
        return [a for a in self._actors if a is not None]

    def _spawn(self) -> Any:
        return self._actor_cls.remote(self._factory, self._threads)

    def _submit(self, task: _Task, attention: bool) -> tuple[Any, tuple[int, Any]]:
        """Send ``task`` to the least-loaded live actor: (result ref, (slot, that actor))."""
        with self._lock:
            live = [i for i, a in enumerate(self._actors) if a is not None]
            if not live:
                raise WorkerError("every Ray worker has died and the restart budget is spent")
            slot = min(live, key=self._load.__getitem__)
            self._load[slot] += 1
            actor = self._actors[slot]
            return actor.process.remote(task.batch.images, attention), (slot, actor)

    def _replace(self, slot: int, dead: Any) -> None:
        with self._lock:
            if self._actors[slot] is not dead:  # another thread already replaced it
                return
            ray.kill(dead, no_restart=True)
            if self._restarts < self.config.max_restarts:
                self._restarts += 1
                self._actors[slot] = self._spawn()
                log.warning("a Ray worker died; replaced it (%d of %d restarts used)",
                            self._restarts, self.config.max_restarts)
            else:
                self._actors[slot] = None
                log.warning("a Ray worker died and the restart budget is spent")

    def map(self, batches: Iterable[Batch], *, attention: bool = False) -> Iterator[BatchResult]:
        source = iter(batches)
        order: deque[_Task] = deque()  # submitted, not yet yielded, in source order
        pending: dict[Any, tuple[_Task, tuple[int, Any]]] = {}  # ref -> (task, (slot, actor))
        window = self.config.workers * self.config.in_flight
        exhausted = False
        try:
            while True:
                while (not exhausted and len(order) < window
                       and self._slots.acquire(timeout=0.05 if not pending else 0)):
                    batch = next(source, None)
                    if batch is None:
                        self._slots.release()
                        exhausted = True
                        break
                    task = _Task(batch)
                    order.append(task)
                    ref, where = self._submit(task, attention)
                    pending[ref] = (task, where)
                while order and order[0].result is not None:
                    yield order.popleft().result
                if exhausted and not order:
                    return
                if not pending:
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    task, where = pending.pop(ref)
                    self._finish(ref, task, where, attention, pending)
        finally:
            for ref in pending:
                ray.cancel(ref)
                self._slots.release()

    def _finish(self, ref: Any, task: _Task, where: tuple[int, Any], attention: bool,
                pending: dict[Any, tuple[_Task, tuple[int, Any]]]) -> None:
        slot, actor = where  # the actor that ran it, even if the slot holds a new one now
        with self._lock:
            self._load[slot] -= 1
        try:
            images, att = ray.get(ref)
        except RayError as e:
            if isinstance(e, RayActorError):
                self._replace(slot, actor)
            task.attempts += 1
            task.errors.append(_cause(e))
            if task.attempts > self.config.batch_retries:
                self._slots.release()
                frames = task.batch.frames
                raise WorkerError(
                    f"frames {frames[0].index}-{frames[-1].index} failed {task.attempts} times "
                    f"on Ray workers: {task.errors[-1]}") from None
            log.warning("batch of frames %d-%d failed (%s); retrying",
                        task.batch.frames[0].index, task.batch.frames[-1].index, task.errors[-1])
            new_ref, new_where = self._submit(task, attention)
            pending[new_ref] = (task, new_where)
            return
        self._slots.release()
        task.result = BatchResult(task.batch, images, att)

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            if actor is not None:
                ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False


def _cause(error: BaseException) -> str:
    """The first line of what went wrong on the worker, without Ray's traceback dump."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
