"""Valuation runs started from the console: one child process per run, progress back over a queue.

The child calls ``pipeline.run_valuation`` (what ``eco-value run`` calls) with a progress callback that
puts ``(stage, fraction)`` on a queue; a thread of the server reads the queue into the job's event list,
which the server-sent-events endpoint streams. Cancel interrupts the child as Ctrl-C does (the pipeline
marks its run failed and removes its partial output folder), terminates it if it has not ended after
``CANCEL_GRACE_S``, and then lets the store mark a run still left ``running`` as failed
(``Store.mark_interrupted``: the process is gone). So a cancelled run is either not stored at all or
stored as failed, never half-written: the results go into the store in one transaction. A run cancelled
after that transaction committed stays complete (its files may then be missing, which the store records).

Only catalogs under the folder the server was given (``serve --catalogs DIR``) can be run; a request
names one by its path relative to that folder, and it must be one of the listed catalogs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EcoValueError

CATALOG_NAME = "catalog.toml"
MAX_CATALOGS = 500
FINISHED = ("complete", "failed", "cancelled")
CANCEL_GRACE_S = 15.0        # from the interrupt to terminating the run's process
KILL_WAIT_S = 10.0


class JobError(EcoValueError):
    """A run request the console refuses (no catalogs folder, a catalog outside it, unknown job)."""


def list_catalogs(root: Path | None) -> list[str]:
    """Catalogs under ``root`` (relative POSIX paths), symlinks not followed out of it."""
    if root is None:
        return []
    base = Path(root).resolve()
    out = []
    for p in sorted(base.rglob(CATALOG_NAME)):
        if p.is_file() and p.resolve().is_relative_to(base):
            out.append(p.relative_to(base).as_posix())
        if len(out) >= MAX_CATALOGS:
            break
    return out


def resolve_catalog(root: Path | None, name: str) -> Path:
    if root is None:
        raise JobError("this console was started without a catalogs folder; start it with "
                       "`eco-value serve --catalogs DIR` to run the catalogs under DIR")
    listed = list_catalogs(root)
    if name not in listed:
        raise JobError(f"catalog {name!r} is not one of the {len(listed)} catalog(s) under the console's catalogs folder; "
                       "choose one from the list (GET /api/catalogs)")
    return Path(root).resolve() / name


def _child(catalog: str, db: str | None, mc_draws: int | None, force: bool, q) -> None:
    """The run in the child process; every outcome goes on the queue, nothing is printed."""
    # cancel = SIGINT = Ctrl-C: the pipeline then records the failure and removes its partial output. A
    # server started in the background of a shell inherits SIGINT *ignored*; restore Python's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from ..pipeline import RunOptions, run_valuation
    from ..store import Store

    # Tests of cancellation need a run that is still running when the cancel arrives; a small pilot
    # finishes in seconds on an idle machine. ECO_VALUE_JOB_STAGE_PAUSE_S pauses the child once, at the
    # first stage after the inputs are hashed (the run is then stored as 'running'). Unset: no pause.
    pause = {"s": float(os.environ.get("ECO_VALUE_JOB_STAGE_PAUSE_S") or 0.0)}

    def report(stage: str, frac):
        q.put(("progress", stage, frac))
        if pause["s"] and stage not in ("validate inputs", "hash inputs"):
            time.sleep(pause.pop("s"))
            pause["s"] = 0.0

    try:
        kw = {"force": force} | ({"mc_draws": mc_draws} if mc_draws else {})
        res = run_valuation(catalog, Store(db), RunOptions(**kw), progress=report)
        q.put(("done", res.run_id, res.reused))
    except EcoValueError as exc:
        q.put(("error", str(exc), None))
    except BaseException as exc:  # noqa: BLE001 - the parent shows every failure
        q.put(("error", f"{type(exc).__name__}: {exc}", None))


@dataclass
class Job:
    id: str
    catalog: str
    user: str
    started: float
    status: str = "running"
    stage: str = "starting"
    fraction: float | None = None
    run_id: str | None = None
    reused: bool = False
    error: str | None = None
    events: list[dict] = field(default_factory=list)
    proc: object = None

    def public(self) -> dict:
        return {"job_id": self.id, "catalog": self.catalog, "user": self.user, "status": self.status, "stage": self.stage,
                "fraction": self.fraction, "run_id": self.run_id, "reused": self.reused, "error": self.error,
                "seconds": round(time.time() - self.started, 1)}


class Jobs:
    def __init__(self, store, db: str | None, root: Path | None, mask=lambda s: s):
        self.store, self.db, self.root, self.mask = store, db, root, mask
        self._d: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ctx = mp.get_context("spawn")     # a clean interpreter: no server threads or open connections

    def get(self, job_id: str) -> Job:
        with self._lock:
            j = self._d.get(job_id)
        if j is None:
            raise JobError(f"no job {job_id!r} (jobs are kept while the server runs)")
        return j

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._d.values(), key=lambda j: -j.started)

    def _event(self, j: Job, **ev) -> None:
        with self._lock:      # a snapshot: a slow reader of the stream never sees a later state in an earlier event
            j.events.append(j.public() | ev)

    def start(self, catalog: str, user: str, mc_draws: int | None = None, force: bool = False) -> Job:
        path = resolve_catalog(self.root, catalog)
        q = self._ctx.Queue()
        j = Job(id=uuid.uuid4().hex[:12], catalog=catalog, user=user, started=time.time())
        j.proc = self._ctx.Process(target=_child, args=(str(path), self.db, mc_draws, force, q), daemon=True)
        with self._lock:
            self._d[j.id] = j
        self._event(j, kind="started")
        j.proc.start()
        threading.Thread(target=self._watch, args=(j, q), daemon=True).start()
        return j

    def _watch(self, j: Job, q) -> None:
        while True:
            try:
                kind, a, b = q.get(timeout=0.2)
            except queue.Empty:
                if j.proc.is_alive():
                    continue
                try:                        # the child may have put its last message just before it ended
                    kind, a, b = q.get(timeout=0.5)
                except queue.Empty:
                    self._finish(j, "failed" if j.status != "cancelled" else "cancelled",
                                 error=j.error or f"the run process ended (exit code {j.proc.exitcode}) without a result")
                    return
            if j.status == "cancelled":
                continue
            if kind == "progress":
                j.stage, j.fraction = a, b
                self._event(j, kind="progress")
            elif kind == "done":
                j.run_id, j.reused = a, bool(b)
                self._finish(j, "complete")
                return
            else:
                self._finish(j, "failed", error=self.mask(a))
                return

    def _finish(self, j: Job, status: str, error: str | None = None) -> None:
        if j.status in FINISHED:
            return
        j.proc.join(timeout=30)
        j.status, j.error = status, error
        if status == "complete":
            j.fraction = 1.0
        self._event(j, kind="finished")

    def cancel(self, job_id: str) -> Job:
        """Terminate the run's process; the run it left ``running`` is marked failed; nothing half-written."""
        j = self.get(job_id)
        if j.status in FINISHED:
            raise JobError(f"job {job_id} is {j.status} already; there is nothing to cancel")
        with self._lock:
            j.status = "cancelled"
            j.error = f"cancelled during '{j.stage}'"
        try:
            os.kill(j.proc.pid, signal.SIGINT)          # as Ctrl-C: the pipeline records the failure and cleans up
        except ProcessLookupError:
            pass
        j.proc.join(timeout=CANCEL_GRACE_S)
        if j.proc.is_alive():
            j.proc.terminate()
            j.proc.join(timeout=KILL_WAIT_S)
        if j.proc.is_alive():
            j.proc.kill()
            j.proc.join(timeout=KILL_WAIT_S)
        self.store.mark_interrupted()
        if j.proc.exitcode is not None and j.proc.exitcode < 0:
            # killed before its own clean-up ran (it did not stop within the grace time): remove its
            # temporary output now, as the next output into that folder would
            from ..safe_write import clean_leftovers

            try:
                clean_leftovers(resolve_catalog(self.root, j.catalog).parent / "results")
            except JobError:
                pass
        self._event(j, kind="finished")
        return j

    def shutdown(self) -> None:
        for j in self.all():
            if j.status not in FINISHED:
                self.cancel(j.id)
