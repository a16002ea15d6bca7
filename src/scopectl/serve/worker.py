"""Enhancement workers: claim a job, run the admin-chosen model on the stored upload, store the result and tiles.

A worker runs inside ``scopectl serve`` (threads; woken at once by each upload) or as ``scopectl worker`` on
another machine (PostgreSQL queue, images on a shared filesystem; it looks for work every ``poll_s``).
While a job runs, a heartbeat thread renews its lease; a worker that dies loses its lease and the job is
queued again (:mod:`scopectl.serve.queue`).

For each job:

1. the model assigned to the case's sample type (or to ``*``) is looked up and refused if its card says it
   is worse than bicubic;
2. the stored upload is checked against its SHA-256 and decoded by :func:`scopectl.imageio.read_image`;
3. if the capture's pixel size differs from the model's input pixel size by more than 3 %, it is resampled
   to it first (as ``scopectl enhance`` does);
4. the network runs (:func:`scopectl.learn.enhance.enhance_image`: tiled, on a GPU when present);
5. the deep-zoom tiles and the OME-TIFF are written atomically, then the job is marked ``done``.
A failure marks the job ``failed`` with a one-line reason.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from scopectl.errors import ConfigError, ScopectlError
from scopectl.imageio import read_image
from scopectl.learn.enhance import enhance_image
from scopectl.serve import queue
from scopectl.serve.db import Database, captures, db_epoch, model_assignments, workers
from scopectl.serve.models import ModelCache
from scopectl.serve.settings import ServeSettings
from scopectl.serve.storage import ServeFiles
from scopectl.serve.tiles import write_tile_pack
from scopectl.writers import write_image

__all__ = ["PIXEL_SIZE_TOLERANCE", "Worker", "assigned_model"]

log = logging.getLogger(__name__)

#: Relative pixel-size mismatch above which a capture is resampled to the model's input pixel size.
PIXEL_SIZE_TOLERANCE = 0.03
#: How often a worker looks for jobs whose lease ran out, in seconds.
REQUEUE_EVERY_S = 5.0


def assigned_model(conn: Any, sample_type: str) -> str:
    """The model assigned to a sample type, else the one assigned to ``*``.

    Raises
    ------
    ConfigError
        If neither has a model.
    """
    rows = {
        str(r.sample_type): str(r.model_name)
        for r in conn.execute(
            select(model_assignments.c.sample_type, model_assignments.c.model_name).where(
                model_assignments.c.sample_type.in_([sample_type, "*"])
            )
        )
    }
    name = rows.get(sample_type) or rows.get("*")
    if name is None:
        raise ConfigError(
            f"no model is assigned to sample type {sample_type!r}.",
            hint="An admin assigns one on the admin page (or to '*' for every sample type); then retry.",
        )
    return name


def _resample(rgb: np.ndarray, *, factor: float) -> np.ndarray:
    import cv2  # OpenCV (heavy) loads only when this runs

    rows = max(1, round(rgb.shape[0] * factor))
    cols = max(1, round(rgb.shape[1] * factor))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (cols, rows), interpolation=interp))


@dataclass
class _Heartbeat:
    """Renews a job's lease every third of it until stopped; notes when the lease was lost."""

    db: Database
    job_id: int
    worker: str
    lease_s: float
    lost: bool = False

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.job_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self.db.begin() as conn:
                    if not queue.renew(conn, self.job_id, worker=self.worker, lease_s=self.lease_s):
                        self.lost = True
                        return
            except Exception:  # a database hiccup: try again at the next beat
                log.warning("could not renew the lease of job %d", self.job_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Worker:
    """One enhancement worker.

    Parameters
    ----------
    db, settings
        The database and the settings (root, lease, poll interval, device, precision).
    index
        Distinguishes the workers of one process in their names (``host:pid:index``).
    wake
        Set by the server on each upload so an idle worker starts at once.
    models
        A model cache shared by the workers of one process.
    on_change
        Called with the capture id after a job's state changed (the server wakes status waiters).
    """

    def __init__(
        self,
        db: Database,
        settings: ServeSettings,
        *,
        index: int = 0,
        wake: threading.Event | None = None,
        models: ModelCache | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.files = ServeFiles(settings.root)
        self.name = f"{socket.gethostname()[:80]}:{os.getpid()}:{index}"
        self.wake = wake if wake is not None else threading.Event()
        self.models = models or ModelCache(
            settings.root / "models", device=settings.device, precision=settings.precision
        )
        self.on_change = on_change
        self.jobs_done = 0
        self.current: queue.Claimed | None = None
        self._last_requeue = 0.0

    # ------------------------------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Work until ``stop`` is set (or ``max_jobs`` jobs are done, or the queue is empty with
        ``exit_when_idle``); return the number of jobs done."""
        self._register()
        try:
            while not stop.is_set():
                if max_jobs is not None and self.jobs_done >= max_jobs:
                    break
                self._requeue_expired()
                self.wake.clear()
                with self.db.begin() as conn:
                    claimed = queue.claim(conn, worker=self.name, lease_s=self.settings.lease_s)
                if claimed is None:
                    if exit_when_idle:
                        break
                    self._beat()
                    self.wake.wait(self.settings.poll_s)
                    continue
                self._notify(claimed.capture_id)
                self.current = claimed
                try:
                    self.process(claimed, stop)
                finally:
                    self.current = None
                self.jobs_done += 1
        finally:
            self._unregister()
        return self.jobs_done

    def give_back_current(self) -> None:
        """Put the job this worker is still running back in the queue (shutdown ran out of patience).

        If the worker finishes it after all, its result is discarded (it no longer holds the job).
        """
        claimed = self.current
        if claimed is None:
            return
        with self.db.begin() as conn:
            if queue.release(conn, claimed.job_id, worker=self.name):
                log.warning("job %d was given back to the queue at shutdown", claimed.job_id)

    def _requeue_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_requeue < min(REQUEUE_EVERY_S, self.settings.lease_s / 2):
            return
        self._last_requeue = now
        with self.db.begin() as conn:
            requeued, failed = queue.requeue_expired(conn, max_attempts=self.settings.max_attempts)
        if requeued or failed:
            log.warning(
                "%d job(s) lost their worker: %d queued again, %d failed", requeued + failed, requeued, failed
            )

    def _register(self) -> None:
        with self.db.begin() as conn:
            conn.execute(delete(workers).where(workers.c.id == self.name))
            conn.execute(
                workers.insert().values(
                    id=self.name,
                    host=socket.gethostname()[:128],
                    pid=os.getpid(),
                    device=str(self.models.device),
                    started_at=time.time(),
                    last_seen=db_epoch(),
                )
            )

    def _beat(self) -> None:
        with self.db.begin() as conn:
            conn.execute(workers.update().where(workers.c.id == self.name).values(last_seen=db_epoch()))

    def _unregister(self) -> None:
        try:
            with self.db.begin() as conn:
                conn.execute(delete(workers).where(workers.c.id == self.name))
        except Exception:  # shutting down: the row only says who was alive
            log.warning("could not unregister worker %s", self.name, exc_info=True)

    def _notify(self, capture_id: str) -> None:
        if self.on_change is not None:
            self.on_change(capture_id)

    # ------------------------------------------------------------------------------------------- one job
    def process(self, claimed: queue.Claimed, stop: threading.Event | None = None) -> str:
        """Run one claimed job to ``done`` or ``failed``; return the final state (``lost`` if the lease was)."""
        beat = _Heartbeat(self.db, claimed.job_id, self.name, self.settings.lease_s)
        state = "lost"
        try:
            try:
                outcome = self._enhance(claimed)
            except ScopectlError as exc:
                with self.db.begin() as conn:
                    ok = queue.fail(conn, claimed.job_id, worker=self.name, reason=exc.one_line())
                state = "failed" if ok else "lost"
            except Exception as exc:
                log.exception("job %d failed", claimed.job_id)
                with self.db.begin() as conn:
                    ok = queue.fail(
                        conn,
                        claimed.job_id,
                        worker=self.name,
                        reason=f"internal error: {type(exc).__name__}: {exc}",
                    )
                state = "failed" if ok else "lost"
            else:
                with self.db.begin() as conn:
                    ok = queue.finish(conn, claimed.job_id, worker=self.name, outcome=outcome)
                state = "done" if ok else "lost"
        finally:
            beat.stop()
            self._notify(claimed.capture_id)
        if state == "lost":
            log.warning("job %d: lease lost to another worker; its result was discarded", claimed.job_id)
        return state

    def _enhance(self, claimed: queue.Claimed) -> dict[str, Any]:

        t0 = time.perf_counter()
        with self.db.connect() as conn:
            cap = conn.execute(select(captures).where(captures.c.id == claimed.capture_id)).one()
            model_name = assigned_model(conn, claimed.sample_type)
        loaded = self.models.get(model_name)
        card = loaded.card
        outcome: dict[str, Any] = {
            "model_name": loaded.name,
            "model_sha256": card.weights_sha256,
            "model_checked": loaded.checked,
            "device": loaded.device,
            "precision": loaded.precision,
        }
        source = self.files.verify_object(str(cap.sha256))
        rgb = read_image(source).rgb
        # unknown pixel size: assume the model's (and say so in the viewer)
        px_in = float(cap.pixel_size_um) if cap.pixel_size_um is not None else card.input_pixel_size_um
        resampled = abs(px_in / card.input_pixel_size_um - 1.0) > PIXEL_SIZE_TOLERANCE
        if resampled:
            rgb = _resample(rgb, factor=px_in / card.input_pixel_size_um)
        out = enhance_image(loaded.network, rgb, precision=loaded.precision)
        p, q = card.ratio_pq
        px_out = card.input_pixel_size_um * q / p
        folder = self.files.capture_dir(claimed.capture_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_tile_pack(self.files.job_tiles(claimed.capture_id, claimed.job_id), out)
        export = self.files.job_export(claimed.capture_id, claimed.job_id, "ome-tiff")
        export.unlink(missing_ok=True)  # a job done again after its worker was lost
        write_image(
            export,
            out,
            fmt="ome-tiff",
            pixel_size_um=px_out,
            annotations={
                "name": f"{claimed.capture_id}-enhanced",
                "software": "scopectl serve",
                "model": loaded.name,
                "model_sha256": card.weights_sha256,
                "input_sha256": str(cap.sha256),
                "input_pixel_size_um": f"{px_in:.6g}",
                "resampled": str(resampled).lower(),
            },
        )
        outcome.update(
            {
                "seconds": time.perf_counter() - t0,
                "out_rows": int(out.shape[0]),
                "out_cols": int(out.shape[1]),
                "in_pixel_size_um": px_in,
                "out_pixel_size_um": px_out,
                "resampled": resampled,
            }
        )
        return outcome
