"""Acquiring one slide: decide resume-or-create, open the rig and the store, run the plan, close everything.

This is the policy behind ``scopectl acquire``; the CLI parses arguments, builds an
:class:`AcquireRequest`, and prints.  :class:`SlideAcquisition` checks the request against the slide file
(:meth:`~SlideAcquisition.check`, before anything is written), then :meth:`~SlideAcquisition.run`:

* an existing slide (``--resume`` / ``--recapture-flagged``) is reopened for writing and continues its saved
  plan, with its protocol, seed and kind of rig (simulated or real);
* otherwise a plan is built from the protocol (the rig's default protocol when none is named) and a new slide
  is created (replacing one with ``force``);
* every resource (private folders, pymmcore-plus's log, the rig, the store, the progress display) is held by one
  :class:`contextlib.ExitStack`, so each is closed, in reverse order, whatever fails.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scopectl.acquisition.checks import locate_in_mosaic
from scopectl.acquisition.engine import AcquisitionEngine, Operator, Progress
from scopectl.acquisition.plan import AcquisitionPlan, build_plan
from scopectl.acquisition.protocol import AcquisitionProtocol, load_protocol
from scopectl.errors import ConfigError, DeviceError, StoreExistsError
from scopectl.hardware.benchtop.logfile import pymmcore_log
from scopectl.hardware.rig import ManualPhoneStage, Rig, load_rig_config, open_rig
from scopectl.stitching import stitch_store
from scopectl.store import DataRoot, SlideStore

__all__ = ["AcquireOutcome", "AcquireRequest", "BenchOperator", "SlideAcquisition"]

#: The protocol of a new slide on the simulated rig when none is named (a rig file names its own).
SIMULATED_DEFAULT_PROTOCOL = "lung-trichrome"


class BenchOperator(Operator, Protocol):
    """The person at the bench, who also moves a hand-operated phone stage."""

    def prompt_move(self, message: str) -> None:
        """Ask for the stage to be moved and wait until it is."""
        ...


@dataclass(frozen=True)
class AcquireRequest:
    """What ``scopectl acquire`` was asked to do.

    Attributes
    ----------
    slide_id
        The slide (file ``<root>/slides/<id>.h5``).
    rig
        ``"sim"`` or the path of a rig.yaml.
    protocol
        A protocol name or path; ``None``: the rig's default (a resumed slide keeps its own).
    resume, force, recapture_flagged
        Continue an existing slide, replace it, or retake its flagged fields.
    seed
        Seed of a new plan and of the simulated rig (a resumed slide keeps its plan's seed).
    """

    slide_id: str
    rig: str
    protocol: str | None = None
    resume: bool = False
    force: bool = False
    seed: int = 0
    recapture_flagged: bool = False

    @property
    def simulated(self) -> bool:
        return self.rig == "sim"


@dataclass(frozen=True)
class AcquireOutcome:
    """The engine's summary, and why pymmcore-plus's log could not be written (``None`` if it could)."""

    summary: dict[str, Any]
    log_failure: str | None


class SlideAcquisition:
    """Acquire one slide as an :class:`AcquireRequest` says.

    Parameters
    ----------
    request
        The request.
    data
        The data root (slides, logs and private working folders live under it).
    operator
        The person at the bench (notices, pauses, stage moves).
    operator_at_terminal
        Whether someone can answer prompts; a hand-moved phone stage needs it.
    """

    def __init__(
        self, request: AcquireRequest, *, data: DataRoot, operator: BenchOperator, operator_at_terminal: bool
    ) -> None:
        self.request = request
        self.data = data
        self.operator = operator
        self.operator_at_terminal = operator_at_terminal
        self.path = data.slide_path(request.slide_id)  # validates the id

    def check(self) -> None:
        """Refuse contradictory options and a slide file that does not fit them (nothing is written).

        Raises
        ------
        ConfigError
            ``resume`` and ``force`` together.
        StoreExistsError
            Nothing to resume, or a slide that exists and is neither resumed nor replaced.
        """
        req, path = self.request, self.path
        if req.resume and req.force:
            raise ConfigError("--resume and --force contradict each other.", hint="Pick one.")
        if (req.recapture_flagged or req.resume) and not path.exists():
            raise StoreExistsError(
                f"{path}: no slide '{req.slide_id}' to resume.", hint="Start it without --resume."
            )
        if path.exists() and not (req.resume or req.force or req.recapture_flagged):
            raise StoreExistsError(
                f"{path}: slide '{req.slide_id}' already exists.",
                hint="Use --resume to continue it, --recapture-flagged to retake flagged fields, or --force to replace it.",
            )

    def run(self, *, progress: Callable[[], contextlib.AbstractContextManager[Progress]]) -> AcquireOutcome:
        """Open the rig and the store, run the plan, and close everything.

        Parameters
        ----------
        progress
            Enters the progress display for the run and yields its callbacks.

        Returns
        -------
        AcquireOutcome
            The engine's summary.
        """
        self.check()
        with contextlib.ExitStack() as scope:
            sim_dir = self._private_dir(scope, "sim") if self.request.simulated else None
            pull_dir = self._private_dir(scope, "pull")
            log = scope.enter_context(pymmcore_log(self.data.logs_dir / "pymmcore-plus.log"))
            if self.path.exists() and not self.request.force:
                store, rig, plan = self._resume(scope, sim_dir)
            else:
                store, rig, plan = self._create(scope, sim_dir)
            if isinstance(rig.phone_stage, ManualPhoneStage) and not self.operator_at_terminal:
                raise DeviceError(
                    f"rig {rig.name}: the phone stage is moved by hand and no operator is at a terminal.",
                    hint="Run scopectl acquire interactively.",
                )
            bars = scope.enter_context(progress())
            engine = AcquisitionEngine(
                rig,
                store,
                plan,
                operator=self.operator,
                locator=locate_in_mosaic,
                stitcher=stitch_store,
                progress=bars,
                recapture_flagged=self.request.recapture_flagged,
                pull_dir=pull_dir,
            )
            summary = engine.run()
        return AcquireOutcome(summary=summary, log_failure=log.failure if log is not None else None)

    def _private_dir(self, scope: contextlib.ExitStack, kind: str) -> Path:
        """A private folder under the root (``.scopectl/<kind>-<pid>``, 0700), removed when ``scope`` closes."""
        path = self.data.private_dir(kind)
        scope.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def _open_rig(self, proto: AcquisitionProtocol, *, seed: int, workdir: Path | None) -> Rig:
        """Open the rig for a protocol (the simulated cameras take the protocol's frame sizes)."""
        return open_rig(
            self.request.rig,
            seed=seed,
            sample=proto.sample,
            prompt=self.operator.prompt_move,
            capture_shape=proto.phone.capture_shape_px,
            benchtop_tile_shape=proto.benchtop.tile_shape_px,
            workdir=workdir,
        )

    def _resume(
        self, scope: contextlib.ExitStack, sim_dir: Path | None
    ) -> tuple[SlideStore, Rig, AcquisitionPlan]:
        """Reopen the slide and its saved plan (same protocol, seed and kind of rig), then the rig."""
        req, path = self.request, self.path
        store = scope.enter_context(SlideStore.open(path, mode="a"))
        saved = store.plan()
        if not saved:
            raise StoreExistsError(
                f"{path}: slide '{req.slide_id}' has no acquisition plan (was it imported?)."
            )
        plan = AcquisitionPlan.model_validate(saved)
        if req.protocol is not None and load_protocol(req.protocol).name != plan.protocol["name"]:
            raise ConfigError(
                f"{path}: slide '{req.slide_id}' was started with protocol '{plan.protocol['name']}', not '{req.protocol}'.",
                hint="A resumed slide keeps its protocol; drop --protocol.",
            )
        if store.simulated != req.simulated:
            raise ConfigError(
                f"{path}: slide '{req.slide_id}' was acquired on {'the simulated rig' if store.simulated else 'real hardware'}; "
                f"--rig {req.rig} would mix the two.",
                hint="Resume it on the same kind of rig.",
            )
        if store.discarded:
            self.operator.notice(
                f"resuming: discarded {len(store.discarded)} incomplete item(s) left by the interrupted run"
            )
        rig = scope.enter_context(self._open_rig(plan.protocol_model(), seed=plan.seed, workdir=sim_dir))
        return store, rig, plan

    def _create(
        self, scope: contextlib.ExitStack, sim_dir: Path | None
    ) -> tuple[SlideStore, Rig, AcquisitionPlan]:
        """Open the rig for the protocol, build the plan and create the slide (replacing it with ``force``)."""
        req = self.request
        name = req.protocol
        if name is None:
            name = (
                SIMULATED_DEFAULT_PROTOCOL
                if req.simulated
                else load_rig_config(Path(req.rig)).default_protocol
            )
        proto = load_protocol(name)
        rig = scope.enter_context(self._open_rig(proto, seed=req.seed, workdir=sim_dir))
        plan = build_plan(proto, slide_id=req.slide_id, seed=req.seed)
        store = scope.enter_context(
            SlideStore.create(
                self.path,
                slide_id=req.slide_id,
                rig=rig.description,
                simulated=rig.simulated,
                protocol=proto.model_dump(mode="json"),
                force=req.force,
            )
        )
        store.set_plan(plan.model_dump(mode="json"))
        return store, rig, plan
