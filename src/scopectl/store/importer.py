"""Build a slide store from image files collected by other means (``scopectl import``).

Every input file is read and validated before anything is written; the slide is written to a
temporary file next to its final place and renamed only when complete, so a bad file or an
interruption never leaves a half-written slide behind.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scopectl.errors import InputFileError, StoreExistsError, from_os_error
from scopectl.imageio import PIXEL_SIZE_RANGE_UM as _PIXEL_SIZE_RANGE_UM
from scopectl.imageio import ImageFile, check_pixel_size_um, read_image
from scopectl.store.lock import WriteLock
from scopectl.store.paths import validate_slide_id
from scopectl.store.slide import CaptureRecord, SlideStore, TileRecord

__all__ = ["ImportResult", "TileGrid", "import_slide"]

#: Plausible pixel sizes at the sample, in µm (the decoder policy's range, :mod:`scopectl.imageio`).
PIXEL_SIZE_RANGE_UM = _PIXEL_SIZE_RANGE_UM


@dataclass(frozen=True)
class TileGrid:
    """Layout of several benchtop tiles given in row-major order."""

    rows: int
    cols: int
    overlap: float

    @classmethod
    def parse(cls, text: str, overlap: float) -> TileGrid:
        try:
            r, c = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise InputFileError(f"--benchtop-grid {text!r}: expected ROWSxCOLS, e.g. 3x4.") from None
        if r <= 0 or c <= 0:
            raise InputFileError(f"--benchtop-grid {text!r}: rows and columns must be positive.")
        if not 0.0 <= overlap < 0.9:
            raise InputFileError(f"--benchtop-overlap {overlap}: expected a fraction in [0, 0.9).")
        return cls(r, c, overlap)


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote."""

    path: Path
    slide_id: str
    captures: int
    tiles: int
    mosaic_shape: tuple[int, int]
    phone_pixel_size_um: float
    benchtop_pixel_size_um: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "slide_id": self.slide_id,
            "captures": self.captures,
            "tiles": self.tiles,
            "mosaic_shape": list(self.mosaic_shape),
            "phone_pixel_size_um": self.phone_pixel_size_um,
            "benchtop_pixel_size_um": self.benchtop_pixel_size_um,
        }


def _pixel_size(images: Sequence[ImageFile], flag: float | None, which: str, flag_name: str) -> float:
    """The pixel size of some images: the flag (validated) beats the files' metadata (plausible values only)."""
    if flag is not None:
        return check_pixel_size_um(flag, what=flag_name)
    missing = next((img for img in images if img.pixel_size_um is None), None)
    if missing is not None or not images:
        path = missing.path if missing is not None else "inputs"
        why = (
            f"its metadata {missing.resolution_note}"
            if missing is not None and missing.resolution_note
            else f"the {which} pixel size is not in the file's metadata"
        )
        raise InputFileError(f"{path}: {why}.", hint=f"Pass {flag_name} MICRONS.")
    values = sorted(float(img.pixel_size_um) for img in images if img.pixel_size_um is not None)
    if values[-1] / values[0] > 1.01:
        raise InputFileError(
            f"{which} images disagree on pixel size ({values[0]:.4g}–{values[-1]:.4g} µm).",
            hint=f"Import them separately or pass {flag_name}.",
        )
    return values[0]


def _capture_record(img: ImageFile, index: int, pixel_size_um: float) -> CaptureRecord:
    return CaptureRecord(
        rgb=img.rgb,
        field_index=index,
        pixel_size_um=pixel_size_um,
        dng=img.raw if img.format == "dng" else None,
        jpeg=img.raw if img.format == "jpeg" else None,
        source=img.raw if img.format in ("png", "tiff") else None,
        source_name=img.path.name,
        settings={"format": img.format, **img.settings},
        led_state={},
        battery_mv=None,
        stage_x_um=None,
        stage_y_um=None,
        timestamp=img.path.stat().st_mtime,
        latencies_s={},
        extra={"imported_from": str(img.path.resolve())},
    )


def import_slide(
    path: Path,
    *,
    slide_id: str,
    phone_files: Sequence[Path],
    benchtop_files: Sequence[Path],
    phone_um_per_px: float | None = None,
    benchtop_um_per_px: float | None = None,
    grid: TileGrid | None = None,
    force: bool = False,
    stitcher: Callable[[SlideStore], Any] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ImportResult:
    """Create ``path`` (a slide store) from phone and benchtop image files.

    Parameters
    ----------
    path
        The slide file to create.
    slide_id
        The slide's id (becomes the file name).
    phone_files, benchtop_files
        Phone images (DNG, JPEG, TIFF, PNG) and either one benchtop mosaic or several tiles.
    phone_um_per_px, benchtop_um_per_px
        Pixel sizes at the sample; when None, taken from file metadata (an error if absent).
    grid
        Layout of several benchtop tiles (row-major); required when more than one benchtop file is given.
    force
        Replace an existing slide.
    stitcher
        ``stitcher(store)`` builds the mosaic from the store's tiles (their stage positions come from the grid).

    Raises
    ------
    InputFileError
        For any bad input file, naming it; nothing is written.
    StoreExistsError, StoreLockedError
        If the slide exists (without ``force``) or is being written by another process.
    """
    validate_slide_id(slide_id)
    path = Path(path)
    _check_arguments(path, slide_id, phone_files, benchtop_files, grid=grid, force=force)
    say = on_progress or (lambda _msg: None)

    # 1. Read and validate everything before writing anything.
    phone, bench = _read_images(phone_files, say=say), _read_images(benchtop_files, say=say)
    phone_px = _pixel_size(phone, phone_um_per_px, "phone", "--phone-um-per-px")
    bench_px = _pixel_size(bench, benchtop_um_per_px, "benchtop", "--benchtop-um-per-px")
    _check_tiles(bench, grid=grid, stitcher=stitcher)

    # 2. Write to a temporary file next to the target, then rename.
    files = {
        "phone_files": [str(f) for f in phone_files],
        "benchtop_files": [str(f) for f in benchtop_files],
    }

    def fill(store: SlideStore) -> tuple[int, int]:
        return _fill_slide(
            store,
            phone,
            bench,
            phone_px=phone_px,
            bench_px=bench_px,
            grid=grid,
            stitcher=stitcher,
            say=say,
            log=files,
        )

    shape = _write_new_slide(path, slide_id=slide_id, force=force, files=files, fill=fill)
    return ImportResult(
        path=path,
        slide_id=slide_id,
        captures=len(phone),
        tiles=len(bench) if grid is not None else 0,
        mosaic_shape=shape,
        phone_pixel_size_um=phone_px,
        benchtop_pixel_size_um=bench_px,
    )


def _check_tiles(
    bench: Sequence[ImageFile], *, grid: TileGrid | None, stitcher: Callable[[SlideStore], Any] | None
) -> None:
    """Several benchtop tiles (a grid) must share one size and need a stitcher."""
    if grid is not None:
        shapes = {b.rgb.shape for b in bench}
        if len(shapes) != 1:
            raise InputFileError(
                f"benchtop tiles differ in size ({sorted(shapes)}); tiles of one scan must match."
            )
        if stitcher is None:
            raise InputFileError("stitching of several benchtop tiles is not available in this installation.")


def _write_new_slide(
    path: Path,
    *,
    slide_id: str,
    force: bool,
    files: dict[str, list[str]],
    fill: Callable[[SlideStore], tuple[int, int]],
) -> tuple[int, int]:
    """Create the slide under the write lock in a temporary file next to ``path``, ``fill`` it and rename it
    to ``path``; the temporary file is removed on any failure.  Returns what ``fill`` returns."""
    lock = WriteLock(path)
    lock.acquire()
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        if path.exists() and not force:
            raise StoreExistsError(
                f"{path}: slide '{slide_id}' already exists.", hint="Use --force to replace it."
            )
        with SlideStore.create(
            tmp,
            slide_id=slide_id,
            rig={"kind": "import", **files},
            simulated=False,
            force=True,
            display_path=path,
            space_hint="Free some space (or choose another --root), then run the same import again.",
        ) as store:
            shape = fill(store)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise from_os_error(exc, path=path, action="write the slide") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        lock.release()
    return shape


def _read_images(files: Sequence[Path], *, say: Callable[[str], None]) -> list[ImageFile]:
    """Read and check every file (an error names the first bad one)."""
    images = []
    for f in files:
        say(f"reading {f}")
        images.append(read_image(f))
    return images


def _fill_slide(
    store: SlideStore,
    phone: Sequence[ImageFile],
    bench: Sequence[ImageFile],
    *,
    phone_px: float,
    bench_px: float,
    grid: TileGrid | None,
    stitcher: Callable[[SlideStore], Any] | None,
    say: Callable[[str], None],
    log: dict[str, Any],
) -> tuple[int, int]:
    """Write the captures and the benchtop mosaic (or tiles, stitched) into a new slide, and log the import
    (``log`` names the files); returns the mosaic's (rows, cols)."""
    for i, img in enumerate(phone):
        store.add_capture(_capture_record(img, i, phone_px))
    if grid is None:
        say("writing the benchtop mosaic")
        store.write_mosaic(
            bench[0].rgb,
            pixel_size_um=bench_px,
            origin_x_um=0.0,
            origin_y_um=0.0,
            method={"kind": "imported mosaic", "file": bench[0].path.name},
        )
    else:
        assert stitcher is not None
        _write_tiles(store, bench, grid=grid, pixel_size_um=bench_px)
        say("stitching the benchtop tiles")
        stitcher(store)
    store.log(
        "imported",
        **log,
        phone_pixel_size_um=phone_px,
        benchtop_pixel_size_um=bench_px,
        at=time.time(),
    )
    mi = store.mosaic_info()
    assert mi is not None
    return (mi.rows, mi.cols)


def _check_arguments(
    path: Path,
    slide_id: str,
    phone_files: Sequence[Path],
    benchtop_files: Sequence[Path],
    *,
    grid: TileGrid | None,
    force: bool,
) -> None:
    """Refuse missing inputs, a tile count that does not fit the grid, and an existing slide."""
    if not phone_files:
        raise InputFileError("no phone images given.", hint="Pass --phone FILE (DNG, JPEG, TIFF or PNG).")
    if not benchtop_files:
        raise InputFileError(
            "no benchtop images given.", hint="Pass --benchtop FILE (one mosaic or several tiles)."
        )
    if len(benchtop_files) > 1 and grid is None:
        raise InputFileError(
            f"{len(benchtop_files)} benchtop files given without a layout.",
            hint="Pass --benchtop-grid ROWSxCOLS (files in row-major order) and --benchtop-overlap FRACTION.",
        )
    if grid is not None and grid.rows * grid.cols != len(benchtop_files):
        raise InputFileError(
            f"--benchtop-grid {grid.rows}x{grid.cols} needs {grid.rows * grid.cols} files, got {len(benchtop_files)}."
        )
    if path.exists() and not force:
        raise StoreExistsError(
            f"{path}: slide '{slide_id}' already exists.",
            hint="Use another --slide id, or --force to replace it.",
        )


def _write_tiles(
    store: SlideStore, bench: Sequence[ImageFile], *, grid: TileGrid, pixel_size_um: float
) -> None:
    """Store imported benchtop tiles at their nominal grid positions (row-major; ``grid.overlap`` apart)."""
    tile_rows, tile_cols = bench[0].rgb.shape[:2]
    step_r = tile_rows * (1.0 - grid.overlap)
    step_c = tile_cols * (1.0 - grid.overlap)
    nominal = np.array(
        [[r * step_r, c * step_c] for r in range(grid.rows) for c in range(grid.cols)],
        dtype=np.float64,
    )
    for k, img in enumerate(bench):
        r, c = divmod(k, grid.cols)
        store.add_tile(
            TileRecord(
                rgb=img.rgb,
                row=r,
                col=c,
                stage_x_um=float(nominal[k, 1] * pixel_size_um),
                stage_y_um=float(nominal[k, 0] * pixel_size_um),
                stage_z_um=float("nan"),
                pixel_size_um=pixel_size_um,
                focus_score=float("nan"),
                timestamp=img.path.stat().st_mtime,
                exposure_ms=float("nan"),
                extra={"imported_from": str(img.path.resolve()), "nominal_position": "from grid"},
            )
        )
