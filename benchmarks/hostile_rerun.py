"""Rerun issue 17's kinds of hostile cases through the real CLI and count what went wrong.

    python benchmarks/hostile_rerun.py            # about 3 minutes on 2 cores; run it under the CPU lock

Cases (built by ``tests/hostile_corpus.py``): hostile slides through every command that reads a slide,
hostile images through ``import`` and ``enhance``, hostile models through ``enhance`` and ``evaluate``,
slide ids that climb out of the root, ``--input-pixel-size-um`` values, print-resolution images, a root or
``--out`` that is a file, an unwritable and a read-only root (a real read-only bind mount when unprivileged
user namespaces are available), a file-size limit (``ulimit -f``) on ``import``, ``enhance`` and
``acquire --rig sim``, ``kill -9`` of ``import`` and of ``acquire --rig sim`` followed by the next command,
and a phone whose listing trickles in.

Counted, the goal being 0 for each:

* ``internal_errors``: exit 70 (or a crash: a negative exit status);
* ``writes_outside``: a file created or changed outside the data root and the named output folder (the
  workspace's ``outside/``, the home directory's pymmcore-plus log, ``/tmp/scopectl-*``);
* ``wrongly_accepted``: exit 0 where the input must be refused (or an enhanced image blown up);
* ``leftovers``: partial files, lock files or private folders left under the root after the command (after
  a ``kill -9``: after the *next* command), and simulator folders in ``/tmp``;
* ``data_lost``: a good slide next to the hostile inputs that no longer verifies or changed;
* ``unclear``: a refusal whose stderr is not one ``error:`` line naming the file (or with a traceback).

Each command runs in a worker process (``--worker``) that calls ``scopectl.cli.main.main`` for a batch of
argument lists with stderr captured, so a crash of one batch is seen; environment cases run the
``scopectl`` console script itself.  Results go to ``benchmarks/results/hostile-rerun-<time>.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from hostile_corpus import (  # noqa: E402
    HOSTILE_IMAGES,
    HOSTILE_MODELS,
    SLIDE_COMMANDS,
    Workspace,
    good_benchtop,
    good_model,
    good_slide,
    hostile_slide_names,
    jpeg_bytes,
    leftovers,
    make_hostile_image,
    make_hostile_slide,
    snapshot,
)

SCOPECTL = str(Path(sys.executable).with_name("scopectl"))


# ------------------------------------------------------------------------------------------- worker
def worker(batch: list[list[str]]) -> None:
    """Run each argv through main() with stderr captured; print one JSON line of results."""
    from scopectl.cli.main import main

    results = []
    for argv in batch:
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
        results.append({"rc": rc, "err": err.getvalue(), "out": out.getvalue()})
    sys.__stdout__.write(json.dumps(results) + "\n")


def run_batch(batch: list[list[str]], *, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(batch)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:  # a crash (segfault) or an escaped exception: every command of the batch counts
        return [
            {"rc": proc.returncode if proc.returncode < 0 else 70, "err": proc.stderr[-2000:], "out": ""}
        ] * len(batch)
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------ counting
@dataclass
class Tally:
    cases: int = 0
    internal_errors: int = 0
    writes_outside: int = 0
    wrongly_accepted: int = 0
    leftovers: int = 0
    data_lost: int = 0
    unclear: int = 0
    failures: list[str] = field(default_factory=list)

    def bad(self, kind: str, case: str, detail: str = "") -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.failures.append(f"{kind}: {case}: {detail[:300]}")


def _error_line(err: str) -> str | None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error: ", "internal error: "))]
    if len(errors) != 1 or lines[-1] != errors[0] or "Traceback" in err or "Exception ignored" in err:
        return None
    return errors[0]


def judge(
    t: Tally,
    case: str,
    result: dict[str, Any],
    *,
    refuse: bool,
    names: str | None,
    ws: Workspace | None = None,
    outside_before: dict[str, Any] | None = None,
) -> None:
    t.cases += 1
    rc, err = int(result["rc"]), str(result["err"])
    if rc == 70 or rc < 0:
        t.bad("internal_errors", case, err)
    if refuse and rc == 0:
        t.bad("wrongly_accepted", case, err)
    if rc != 0 and rc != 70:
        line = _error_line(err)
        if line is None or (refuse and names is not None and names not in line):
            t.bad("unclear", case, err)
    if ws is not None:
        if outside_before is not None and snapshot(ws.outside) != outside_before:
            t.bad("writes_outside", case)
        left = leftovers(ws.root)
        if left:
            t.bad("leftovers", case, ", ".join(left))
    new = _tmp_dirs() - TMP_BEFORE
    for p in sorted(new):
        t.bad("leftovers", case, f"{p} in the temporary folder")
    TMP_BEFORE.update(new)


def _tmp_dirs() -> set[Path]:
    """scopectl's folders in the shared temporary folder (old versions put simulator keys and pulls there)."""
    tmp = Path(tempfile.gettempdir())
    return {p for pattern in ("scopectl-sim-*", "scopectl-pull-*") for p in tmp.glob(pattern) if p.is_dir()}


#: Such folders that existed before this run (other processes' on a shared machine): not counted, not touched.
TMP_BEFORE: set[Path] = set()


# ---------------------------------------------------------------------------------------------- cases
def hostile_slides(t: Tally, base: Path, model: Path) -> None:
    for name in hostile_slide_names():
        ws = Workspace(base / f"slide-{name}")
        path, refusing = make_hostile_slide(ws, name)
        good = good_slide(ws.root / "slides" / "keep.h5", "keep")
        keep = good.read_bytes()
        outside = snapshot(ws.outside)
        batch = []
        for template in SLIDE_COMMANDS.values():
            args = [
                a.format(slide=name, model=str(model), out=str(ws.base / "out"), path=str(path))
                for a in template
            ]
            batch.append(["--root", str(ws.root), *args])
        for command, result in zip(SLIDE_COMMANDS, run_batch(batch), strict=True):
            judge(t, f"slide {name} / {command}", result, refuse=command in refusing, names=path.name, ws=ws,
                  outside_before=outside)  # fmt: skip
        if good.read_bytes() != keep:
            t.bad("data_lost", f"slide {name}", "a good slide beside it changed")


def hostile_images(t: Tally, base: Path, model: Path) -> None:
    for name in HOSTILE_IMAGES:
        ws = Workspace(base / f"image-{name}")
        path = make_hostile_image(ws, name)
        bench = good_benchtop(ws)
        outside = snapshot(ws.outside)
        batch = [
            ["--root", str(ws.root), "import", "--slide", "s", "--phone", str(path), "--benchtop", str(bench),
             "--phone-um-per-px", "0.4"],
            ["--root", str(ws.root), "enhance", str(path), "--model", str(model), "--out", str(ws.base / "out")],
        ]  # fmt: skip
        for command, result in zip(("import", "enhance"), run_batch(batch), strict=True):
            judge(
                t,
                f"image {name} / {command}",
                result,
                refuse=True,
                names=str(path),
                ws=ws,
                outside_before=outside,
            )


def hostile_models(t: Tally, base: Path, model: Path) -> None:
    for name, make in HOSTILE_MODELS.items():
        ws = Workspace(base / f"model-{name}")
        make(ws.root / "models" / name, model)
        good_slide(ws.root / "slides" / "s.h5", "s")
        jpg = ws.inputs / "p.jpg"
        jpg.write_bytes(jpeg_bytes(_gray(90)))
        batch = [
            ["--root", str(ws.root), "enhance", str(jpg), "--model", name, "--out", str(ws.base / "out")],
            ["--root", str(ws.root), "evaluate", "--model", name, "--slides", "s", "--figures", "0"],
        ]
        for command, result in zip(("enhance", "evaluate"), run_batch(batch), strict=True):
            judge(
                t,
                f"model {name} / {command}",
                result,
                refuse=True,
                names=str(ws.root / "models" / name),
                ws=ws,
            )


def _gray(level: int) -> Any:
    import numpy as np

    return np.full((64, 80, 3), level, np.uint8)


def traversal_and_options(t: Tally, base: Path, model: Path) -> None:
    ws = Workspace(base / "traversal")
    good_model(ws.root / "models" / "m")
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(jpeg_bytes(_gray(90)))
    outside = snapshot(ws.base, skip=ws.root)
    ids = ["../../outside/x", "../x", "/etc/x", "a/b", ".hidden", "x" * 100, ""]
    batch = []
    for sid in ids:
        for args in (
            ["store", "info", "--slide", sid],
            ["store", "verify", "--slide", sid],
            ["register", "--slide", sid],
            ["evaluate", "--model", "m", "--slides", sid or ","],
            ["dataset", "build", "--slides", sid or ",", "--name", "d"],
            ["acquire", "--slide", sid, "--rig", "sim"],
            ["import", "--slide", sid, "--phone", str(jpg), "--benchtop", str(jpg)],
        ):
            batch.append(["--root", str(ws.root), *args])
    for argv, result in zip(batch, run_batch(batch), strict=True):
        judge(t, f"slide id {argv[4]!r} / {argv[2]}", result, refuse=True, names=None, ws=ws)
    if snapshot(ws.base, skip=ws.root) != outside:
        t.bad("writes_outside", "slide ids")
    values = ["-1", "0", "nan", "inf", "1e6", "25", "-0.0"]
    batch = [
        ["--root", str(ws.root), "enhance", str(jpg), "--model", str(model), "--out", str(ws.base / "o"),
         "--input-pixel-size-um", v]
        for v in values
    ]  # fmt: skip
    for v, result in zip(values, run_batch(batch), strict=True):
        judge(t, f"--input-pixel-size-um {v}", result, refuse=True, names="--input-pixel-size-um", ws=ws)
    for dpi in (72, 96, 300):
        rgb = __import__("numpy").random.default_rng(dpi).integers(0, 256, (64, 80, 3), dtype="uint8")
        img = ws.inputs / f"dpi{dpi}.jpg"
        img.write_bytes(jpeg_bytes(rgb, dpi=dpi))
        (result,) = run_batch(
            [
                [
                    "--root",
                    str(ws.root),
                    "enhance",
                    str(img),
                    "--model",
                    str(model),
                    "--out",
                    str(ws.base / f"d{dpi}"),
                    "--json",
                ]
            ]
        )
        judge(t, f"{dpi}-dpi JPEG / enhance", result, refuse=False, names=None, ws=ws)
        if result["rc"] == 0 and json.loads(result["out"].strip().splitlines()[-1])["outputs"][0][
            "output_shape"
        ] != [160, 200]:
            t.bad(
                "wrongly_accepted",
                f"{dpi}-dpi JPEG / enhance",
                "the output was resampled by the print resolution",
            )


def environment(t: Tally, base: Path, model: Path) -> None:
    ws = Workspace(base / "env")
    afile = ws.outside / "passwd"
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(
        jpeg_bytes(__import__("numpy").random.default_rng(0).integers(0, 256, (400, 500, 3), dtype="uint8"))
    )
    bench = good_benchtop(ws)
    good_slide(ws.root / "slides" / "keep.h5", "keep")
    outside = snapshot(ws.outside)
    batch = [
        ["--root", str(afile), "store", "ls"],
        ["--root", str(afile), "import", "--slide", "s", "--phone", str(jpg), "--benchtop", str(bench)],
        ["--root", str(afile), "register", "--slide", "s"],
        ["--root", str(ws.root), "enhance", str(jpg), "--model", str(model), "--out", str(afile)],
        ["store", "info", "--slide", "keep"],
    ]
    results = run_batch(batch[:4]) + run_batch(batch[4:], env={"SCOPECTL_ROOT": str(afile)})
    for argv, result in zip(batch, results, strict=True):
        judge(
            t,
            f"file as root/out: {' '.join(argv[:4])}",
            result,
            refuse=True,
            names=str(afile),
            ws=ws,
            outside_before=outside,
        )
    zero = ws.root / "slides" / "empty.h5"
    zero.write_bytes(b"")
    (result,) = run_batch([["--root", str(ws.root), "register", "--slide", "empty"]])
    judge(t, "register of a 0-byte slide", result, refuse=True, names=str(zero), ws=ws)
    if zero.stat().st_size != 0:
        t.bad("data_lost", "register of a 0-byte slide", "the refused input was modified")
    zero.unlink()

    writers = {
        "import": [
            "import",
            "--slide",
            "s",
            "--phone",
            str(jpg),
            "--benchtop",
            str(bench),
            "--phone-um-per-px",
            "0.4",
        ],
        "register": ["register", "--slide", "keep", "--no-figures"],
        "dataset": ["dataset", "build", "--slides", "keep", "--name", "d"],
        "enhance": ["enhance", str(jpg), "--model", str(model), "--out", "{root}/out"],
        "train": ["train", "--dataset", "d", "--model", "m2", "--epochs", "1"],
        "acquire": ["acquire", "--slide", "a", "--rig", "sim"],
    }
    ro = _read_only_runner(ws.root)
    for name, args in writers.items():
        argv = [a.replace("{root}", str(ws.root)) for a in args]
        result = ro(["--root", str(ws.root), *argv])
        judge(t, f"read-only root / {name}", result, refuse=True, names=None, ws=ws, outside_before=outside)
    limited = [
        ("import", writers["import"], 500_000),
        ("enhance", ["enhance", str(jpg), "--model", str(model), "--out", str(ws.base / "lim")], 200_000),
        (
            "acquire --rig sim",
            ["acquire", "--slide", "lim", "--rig", "sim", "--protocol", "lung-trichrome"],
            3_000_000,
        ),
    ]
    for name, args, limit in limited:
        result = _scopectl(["--root", str(ws.root), *args], fsize=limit, timeout=900)
        judge(t, f"ulimit -f / {name}", result, refuse=True, names=None, ws=ws, outside_before=outside)
    if _run_main(["--root", str(ws.root), "store", "verify", "--slide", "keep"])["rc"] != 0:
        t.bad("data_lost", "environment cases", "the good slide no longer verifies")


def kill_and_next(t: Tally, base: Path) -> None:
    ws = Workspace(base / "kill")
    import numpy as np
    import tifffile

    big = ws.inputs / "big.tif"
    tifffile.imwrite(big, np.random.default_rng(0).integers(0, 256, (6000, 6000, 3), dtype=np.uint8),
                     resolution=(1 / 0.37, 1 / 0.37), imagej=True, metadata={"unit": "um"})  # fmt: skip
    jpg = ws.inputs / "p.jpg"
    jpg.write_bytes(jpeg_bytes(_gray(80)))
    args = ["import", "--slide", "k", "--phone", str(jpg), "--benchtop", str(big), "--phone-um-per-px", "0.4"]
    _kill_when(["--root", str(ws.root), *args], lambda: any((ws.root / "slides").glob(".k.h5.partial-*")))
    _kill_when(
        ["--root", str(ws.root), "acquire", "--slide", "a", "--rig", "sim"],
        lambda: any((ws.root / ".scopectl").glob("pull-*")) if (ws.root / ".scopectl").is_dir() else False,
        timeout=300,
    )
    for p in sorted(_tmp_dirs() - TMP_BEFORE):
        t.bad("leftovers", "kill -9", f"{p} in the temporary folder")
    shown = _run_main(["--root", str(ws.root), "store", "ls", "--json"])
    listed = json.loads(shown["out"].strip().splitlines()[-1]).get("leftovers", [])
    t.cases += 1
    if not listed:
        t.bad("unclear", "kill -9 / store ls", "the leftovers of the killed runs are not shown")
    result = _run_main(["--root", str(ws.root), *args])
    judge(t, "kill -9 / the next import", result, refuse=False, names=None, ws=ws)


def slow_phone(t: Tally) -> None:
    from scopectl.errors import DeviceTimeoutError
    from scopectl.hardware.phone import PhoneCamera, PhoneTimeouts
    from scopectl.hardware.phone.sim import PhoneFaults, SimulatedPhone
    from scopectl.twin import make_slide  # noqa: F401  (the simulator renders a twin)

    t.cases += 1
    timeouts = PhoneTimeouts(command_s=2, capture_s=6, poll_interval_s=0.1, stable_s=0.2, launch_wait_s=0)
    with tempfile.TemporaryDirectory(dir=HERE) as home:
        os.environ["XDG_CONFIG_HOME"] = home
        source = _FlatSource()
        with SimulatedPhone(
            source, faults=PhoneFaults(list_entry_delay_s=1.0, extra_list_entries=30)
        ) as phone:
            cam = PhoneCamera(phone.address, timeouts=timeouts, profile="sim", use_official_key=False)
            t0 = time.monotonic()
            try:
                with cam:
                    cam.capture(Path(home) / "out")
                t.bad("wrongly_accepted", "phone listing one entry per second", "the capture succeeded")
            except DeviceTimeoutError:
                took = time.monotonic() - t0
                if took > timeouts.capture_s + 2 * timeouts.command_s:
                    t.bad(
                        "unclear", "phone listing one entry per second", f"took {took:.1f} s for capture_s 6"
                    )


class _FlatSource:
    def render_capture(self) -> tuple[bytes, bytes, dict[str, Any]]:
        import numpy as np

        from scopectl.twin.dng import write_dng

        raw = np.full((32, 48), 500, np.uint16)
        dng = write_dng(raw, cfa="RGGB", black_level=64, white_level=1023, color_matrix=np.eye(3),
                        as_shot_neutral=np.ones(3), exposure_s=0.01, iso=100, make="s", model="t")  # fmt: skip
        return dng, jpeg_bytes(_gray(100)), {}


# ------------------------------------------------------------------------------------------ runners
def _run_main(argv: list[str]) -> dict[str, Any]:
    return run_batch([argv])[0]


def _scopectl(argv: list[str], *, fsize: int | None = None, timeout: float = 600) -> dict[str, Any]:
    def limit() -> None:
        if fsize is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    proc = subprocess.run(
        [SCOPECTL, *argv], capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=limit
    )
    return {"rc": proc.returncode, "err": proc.stderr, "out": proc.stdout}


def _read_only_runner(root: Path) -> Callable[[list[str]], dict[str, Any]]:
    """Run scopectl with ``root`` mounted read-only (user + mount namespace), else with an unwritable root."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    if probe.returncode == 0:

        def run(argv: list[str]) -> dict[str, Any]:
            quoted = " ".join(_q(a) for a in argv)
            script = f"mount --bind {_q(str(root))} {_q(str(root))} && mount -o remount,bind,ro {_q(str(root))} && exec {_q(SCOPECTL)} {quoted}"
            proc = subprocess.run(
                ["unshare", "-rm", "sh", "-c", script],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            return {"rc": proc.returncode, "err": proc.stderr, "out": proc.stdout}

        return run
    unwritable = "/sys/scopectl-rerun"
    return lambda argv: _scopectl([unwritable if a == str(root) else a for a in argv])


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _kill_when(argv: list[str], ready: Callable[[], bool], *, timeout: float = 120) -> None:
    proc = subprocess.Popen([SCOPECTL, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return 0
    from _common import hardware, write_result

    t = Tally()
    t0 = time.perf_counter()
    TMP_BEFORE.update(_tmp_dirs())
    home_log = Path.home() / ".local" / "share" / "pymmcore-plus" / "logs"
    home_before = snapshot(home_log) if home_log.is_dir() else {}
    with tempfile.TemporaryDirectory(prefix="hostile-rerun-", dir=HERE) as tmp:
        base = Path(tmp)
        model = good_model(base / "model")
        for step in (hostile_slides, hostile_images, hostile_models, traversal_and_options, environment):
            step(t, base, model)
            print(f"{step.__name__}: {t.cases} cases so far", file=sys.stderr)
        kill_and_next(t, base)
        slow_phone(t)
    home_after = snapshot(home_log) if home_log.is_dir() else {}
    if home_after != home_before:
        t.bad("writes_outside", "pymmcore-plus log", f"{home_log} changed")
    result = {
        "cases": t.cases,
        "internal_errors": t.internal_errors,
        "writes_outside": t.writes_outside,
        "wrongly_accepted": t.wrongly_accepted,
        "leftovers": t.leftovers,
        "data_lost": t.data_lost,
        "unclear": t.unclear,
        "pymmcore_log_in_home_changed": home_after != home_before,
        "failures": t.failures,
        "wall_s": time.perf_counter() - t0,
        "hardware": hardware(),
    }
    path = write_result("hostile-rerun", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("failures", "hardware")}, indent=1))
    for line in t.failures:
        print("  " + line)
    print(f"written to {path}")
    bad = t.internal_errors + t.writes_outside + t.wrongly_accepted + t.leftovers + t.data_lost + t.unclear
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
