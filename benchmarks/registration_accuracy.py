"""Accuracy and speed of the registration, measured where the truth is known.

Run ``python benchmarks/registration_accuracy.py <what>`` (``what``: ``timing``, ``fov20k``,
``synthetic``, ``twin`` or ``all``); add ``--figures DIR`` to write the documentation's figures.
Pin it to one core for the timings: ``taskset -c 0 python benchmarks/registration_accuracy.py timing``.
Results are printed as Markdown tables and one JSON object per line (``--json``).

* ``timing`` — pyramid elastic registration of a 1024×1024 phone capture (0.925 µm/px) against its
  2560×2560 benchtop field, and of a 1024×1024 field, on one thread.
* ``fov20k`` — FOV matching in a 20 000 × 20 000 px mosaic stored in a slide file: the one-off coarse
  index of the slide, then per capture with and without a stage-position prior.
* ``synthetic`` — known smooth warps applied to H&E-like synthetic tissue: RMS residual against the
  known mapping over the blocks that pass the threshold.
* ``twin`` — the digital twin's phone and benchtop renderings (lung, Pap, blood): the same residual
  against the twin's ground truth per sample type.
* ``meanmap`` — the mean shift map of many lung captures of the twin against its stationary lens
  distortion (the twin adds a random warp to every capture, which the mean averages away).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from scopectl.imageio import decode_dng
from scopectl.registration.distortion import DistortionAccumulator, remove_projective_part
from scopectl.registration.elastic import elastic_register
from scopectl.registration.fov import FovParams, MosaicIndex, match_fov, project_points
from scopectl.registration.pair import RegisteredPair, RegisterParams, register_pair
from scopectl.registration.synthetic import SyntheticCapture, phone_capture, tissue_rgb

BENCH_UM = 0.37

F64 = NDArray[np.float64]


def _rms(x: NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else float("nan")


def _residuals(pair: RegisteredPair, truth_mosaic_rc: Any) -> dict[str, float]:
    """RMS of (registered − true) mosaic positions at the check blocks: kept ones, all, and homography only."""
    chk = pair.elastic.check
    cr, cc = chk.centre_px
    g = pair.geometry
    hinv = np.linalg.inv(pair.match.homography)
    out: dict[str, float] = {}
    dr, dc = pair.elastic.field.sample(cr.astype(np.float32), cc.astype(np.float32))
    for name, (sr, sc) in (("elastic", (dr, dc)), ("homography", (np.zeros_like(cr), np.zeros_like(cc)))):
        pr, pc = project_points(hinv, cr + sr + g.target_origin_px[0], cc + sc + g.target_origin_px[1])
        tr, tc = truth_mosaic_rc(pr, pc)
        e = np.hypot(tr - cr - g.target_origin_px[0], tc - cc - g.target_origin_px[1])
        out[f"{name}_rms_kept_px"] = _rms(e[chk.kept])
        out[f"{name}_rms_all_px"] = _rms(e)
        out[f"{name}_max_kept_px"] = float(e[chk.kept].max()) if chk.kept.any() else float("nan")
    out["kept_fraction"] = float(chk.kept.mean())
    out["quality"] = pair.elastic.quality
    out["self_residual_px"] = (
        pair.elastic.residual_px if pair.elastic.residual_px is not None else float("nan")
    )
    return out


# ------------------------------------------------------------------ timing
def measure_timing(*, repeats: int = 5) -> list[dict[str, Any]]:
    """Elastic registration time on one thread for 1024² and 2560² fields (median of ``repeats``)."""
    cv2.setNumThreads(1)
    rows: list[dict[str, Any]] = []
    for field_px, phone_scale in ((2560, 2.5), (1024, 1.0)):
        margin = 32
        size = field_px + 2 * margin + 200
        mosaic = tissue_rgb((size, size), seed=5)
        cap = phone_capture(
            mosaic,
            center_px=(size / 2, size / 2),
            shape=(1024, 1024),
            scale=phone_scale,
            rotation_deg=1.0,
            distortion_px=4.0 / phone_scale,
            seed=2,
        )
        pair = register_pair(cap.rgb, mosaic, phone_pixel_um=BENCH_UM * phone_scale, mosaic_pixel_um=BENCH_UM)
        # time the elastic step alone on exactly the images the pipeline gives it
        from scopectl.registration.pair import _project, registration_images

        g = pair.geometry
        (r0, c0), (h, w) = g.target_origin_px, g.target_shape_px
        projected = _project(cap.rgb, pair.match.homography, g, margin, None)
        moving, ref, _w = registration_images(
            projected, mosaic[r0 : r0 + h, c0 : c0 + w], channel="matched", margin_px=margin
        )
        times, cpu = [], []
        for _ in range(repeats):
            t0, c0_ = time.perf_counter(), time.process_time()
            elastic_register(moving, ref, margin_px=margin)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0_)
        rows.append(
            {
                "what": "elastic",
                "phone_px": [1024, 1024],
                "phone_pixel_um": BENCH_UM * phone_scale,
                "field_px": [h, w],
                "levels": [lev.match.n_blocks[0] for lev in pair.elastic.levels],
                "elastic_s_median": float(np.median(times)),
                "elastic_s_min": float(np.min(times)),
                "elastic_cpu_s_median": float(np.median(cpu)),
                "pipeline_s": pair.timings_s,
            }
        )
    return rows


# ------------------------------------------------------------------ 20K mosaic
def measure_fov20k(
    *, size: int = 20000, captures: int = 3, workdir: Path | None = None
) -> list[dict[str, Any]]:
    """Coarse index and per-capture FOV matching in a ``size``² mosaic stored in a slide file."""
    from scopectl.store import SlideStore

    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(dir=workdir))
    path = tmp / "big.h5"
    t0 = time.perf_counter()
    strip = 1000
    with SlideStore.create(path, slide_id="big", rig={"kind": "measure"}, simulated=True) as store:
        ds = store.write_mosaic(
            None,
            shape=(size, size),
            pixel_size_um=BENCH_UM,
            origin_x_um=0.0,
            origin_y_um=0.0,
            method={"kind": "synthetic"},
        )
        for r0 in range(0, size, strip):
            ds[r0 : r0 + strip] = tissue_rgb((min(strip, size - r0), size), seed=21, origin_px=(r0, 0))
        store.finish_mosaic()
    t_make = time.perf_counter() - t0
    rows: list[dict[str, Any]] = [{"what": "fov20k-mosaic", "size_px": size, "generate_s": t_make}]
    rng = np.random.default_rng(3)
    phone_um = 0.4043
    scale = phone_um / BENCH_UM
    try:
        with SlideStore.open(path) as store:
            mosaic = store.mosaic()
            params = FovParams()
            factor = MosaicIndex.factor_for(
                phone_shape=(1024, 1024), phone_pixel_um=phone_um, mosaic_pixel_um=BENCH_UM, params=params
            )
            t0 = time.perf_counter()
            index = MosaicIndex(mosaic, factor=factor)
            rows.append(
                {
                    "what": "fov20k-index",
                    "factor": factor,
                    "features": len(index.features),
                    "seconds": time.perf_counter() - t0,
                    **index.timings_s,
                }
            )
            for k in range(captures):
                cr, cc = (float(v) for v in rng.uniform(1500, size - 1500, size=2))
                half = 800
                r0, c0 = int(cr) - half, int(cc) - half
                local = np.asarray(mosaic[r0 : r0 + 2 * half, c0 : c0 + 2 * half])
                cap = phone_capture(
                    local,
                    center_px=(cr - r0, cc - c0),
                    shape=(1024, 1024),
                    scale=scale,
                    rotation_deg=2.0,
                    seed=30 + k,
                )
                for prior in (None, (cr + 40.0, cc - 30.0)):
                    t0 = time.perf_counter()
                    m = match_fov(
                        cap.rgb,
                        mosaic,
                        phone_pixel_um=phone_um,
                        mosaic_pixel_um=BENCH_UM,
                        index=index,
                        prior_center_px=prior,
                    )
                    sec = time.perf_counter() - t0
                    centre = m.footprint_px.mean(axis=0)
                    rows.append(
                        {
                            "what": "fov20k-match",
                            "prior": prior is not None,
                            "seconds": sec,
                            "inliers": m.inliers,
                            "centre_error_px": float(np.hypot(centre[0] - cr, centre[1] - cc)),
                            "scale": m.scale,
                            "timings_s": m.timings_s,
                        }
                    )
    finally:
        path.unlink(missing_ok=True)
        for lock in tmp.glob("*"):
            lock.unlink(missing_ok=True)
        tmp.rmdir()
    return rows


# ------------------------------------------------------------------ synthetic warps
def measure_synthetic(*, captures: int = 6, figures: Path | None = None) -> list[dict[str, Any]]:
    """Known smooth warps on synthetic tissue: residual against the exact mapping."""
    cv2.setNumThreads(1)
    mosaic = tissue_rgb((3200, 3200), seed=8)
    rng = np.random.default_rng(1)
    rows: list[dict[str, Any]] = []
    for k in range(captures):
        scale = (0.4043 / BENCH_UM) if k % 2 == 0 else 2.5
        cap: SyntheticCapture = phone_capture(
            mosaic,
            center_px=(float(rng.uniform(1500, 1700)), float(rng.uniform(1500, 1700))),
            shape=(1024, 1024),
            scale=scale,
            rotation_deg=float(rng.uniform(-5, 5)),
            distortion_px=6.0 / scale,
            seed=100 + k,
        )
        pair = register_pair(
            cap.rgb, mosaic, phone_pixel_um=BENCH_UM * scale * 1.05, mosaic_pixel_um=BENCH_UM
        )
        res = _residuals(pair, cap.phone_to_mosaic)
        rows.append(
            {
                "what": "synthetic",
                "capture": k,
                "phone_pixel_um": BENCH_UM * scale,
                **res,
                "timings_s": pair.timings_s,
            }
        )
        if figures is not None and k == 1:
            from scopectl.registration.figures import write_pair_figures

            for f in write_pair_figures(pair, directory=figures, stem="registration-synthetic"):
                rows[-1].setdefault("figures", []).append(str(f))
    return rows


# ------------------------------------------------------------------ digital twin
def measure_twin(
    *,
    per_sample: int = 3,
    samples: tuple[str, ...] = ("lung", "pap", "blood"),
    figures: Path | None = None,
    params: RegisterParams | None = None,
    phone_input: Literal["jpeg", "dng"] = "jpeg",
) -> list[dict[str, Any]]:
    """The twin's phone captures registered to its benchtop frames; residual against its ground truth.

    ``phone_input`` is ``"jpeg"`` (the phone's JPEG, decoded: what the twin's capture holds as ``rgb``) or
    ``"dng"`` (its DNG developed by :func:`scopectl.imageio.decode_dng`, as ``scopectl import`` does).
    """
    from scopectl.twin import BenchtopModel, Illumination, PhoneModel, make_slide

    cv2.setNumThreads(1)
    bench = BenchtopModel()
    phone = PhoneModel()
    bench_um = bench.pixel_size_um
    rows: list[dict[str, Any]] = []
    acc: DistortionAccumulator | None = None
    truths = []
    shape_b = (1400, 1400)
    for sample in samples:
        slide = make_slide(sample, seed=4, width_um=3000.0, height_um=3000.0)  # type: ignore[arg-type]
        rng = np.random.default_rng(7)
        for k in range(per_sample):
            cx, cy = (float(v) for v in rng.uniform(700, 2300, size=2))
            t0 = time.perf_counter()
            frame = bench.render(slide, center_x_um=cx, center_y_um=cy, shape=shape_b, seed=k)
            x0, y0 = bench.frame_origin_um(center_x_um=cx, center_y_um=cy, shape=shape_b)
            cap = phone.capture(
                slide,
                center_x_um=cx + float(rng.uniform(-20, 20)),
                center_y_um=cy + float(rng.uniform(-20, 20)),
                illumination=Illumination.white(),
                seed=50 + k,
                shape=(1024, 1024),
            )
            t_render = time.perf_counter() - t0
            truth = cap.truth

            def to_mosaic(
                pr: F64, pc: F64, truth: Any = truth, x0: float = x0, y0: float = y0
            ) -> tuple[F64, F64]:
                x, y = truth.to_slide_um(pr, pc)
                return (y - y0) / bench_um, (x - x0) / bench_um

            phone_rgb = cap.rgb if phone_input == "jpeg" else decode_dng(cap.dng)[0]
            try:
                pair = register_pair(
                    phone_rgb,
                    frame,
                    phone_pixel_um=phone.pixel_size_um,
                    mosaic_pixel_um=bench_um,
                    params=params,
                )
            except Exception as exc:  # a failed match is a result to report here
                rows.append({"what": "twin", "sample": sample, "capture": k, "failed": str(exc)})
                continue
            res = _residuals(pair, to_mosaic)
            rows.append(
                {
                    "what": "twin",
                    "sample": sample,
                    "capture": k,
                    "render_s": t_render,
                    "inliers": pair.match.inliers,
                    "scale": pair.match.scale,
                    "failure": pair.failure,
                    **res,
                    "timings_s": pair.timings_s,
                }
            )
            if figures is not None and k == 0:
                from scopectl.registration.figures import write_pair_figures

                for f in write_pair_figures(pair, directory=figures, stem=f"registration-twin-{sample}"):
                    rows[-1].setdefault("figures", []).append(str(f))
            if sample == samples[0] and pair.shift_map is not None and pair.failure is None:
                if acc is None:
                    acc = DistortionAccumulator((1024, 1024), spacing_px=16)
                acc.add(
                    homography=pair.match.homography,
                    geometry=pair.geometry,
                    shift_map=pair.shift_map,
                    phone_shape=(1024, 1024),
                    source={"sample": sample, "capture": k},
                )
                truths.append(truth)
    if acc is not None and truths:
        dmap = acc.result()
        n_r, n_c = dmap.values.shape[1:]
        pr, pc = np.meshgrid(16.0 * np.arange(n_r), 16.0 * np.arange(n_c), indexing="ij")
        # the twin's stationary distortion: the radial term (the random warp differs per capture)
        t0_ = truths[0]
        dr = pr - t0_.axis_px[0]
        dc = pc - t0_.axis_px[1]
        rho2 = (dr * dr + dc * dc) / t0_.field_radius_px**2
        radial = np.stack([dr * t0_.distortion_k1 * rho2, dc * t0_.distortion_k1 * rho2])
        seen = dmap.count == len(truths)
        # the map's δ is where content is found; the twin's w(p) is where pixel p looks: δ ≈ −w
        true_np = remove_projective_part(-radial, pr, pc, seen)
        resid = remove_projective_part(dmap.values - (-radial), pr, pc, seen)
        rows.append(
            {
                "what": "twin-mean-map",
                "captures": len(truths),
                "true_stationary_rms_px": _rms(np.hypot(true_np[0][seen], true_np[1][seen])),
                "map_error_rms_px": _rms(np.hypot(resid[0][seen], resid[1][seen])),
                "sensor_fraction_seen_by_all": float(seen.mean()),
            }
        )
        if figures is not None:
            from scopectl.registration.figures import write_distortion_figure

            rows[-1]["figure"] = str(
                write_distortion_figure(dmap, figures / "registration-mean-shift-map.png")
            )
    return rows


def _summary(rows: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    twin = [r for r in rows if r.get("what") == "twin" and "failed" not in r]
    if twin:
        lines += [
            "| sample | captures | RMS residual, kept blocks (bench px) | max | homography only | kept blocks | elastic s | total s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in dict.fromkeys(r["sample"] for r in twin):
            rs = [r for r in twin if r["sample"] == s]
            lines.append(
                f"| {s} | {len(rs)} | {_rms(np.array([r['elastic_rms_kept_px'] for r in rs])):.3f} | "
                f"{max(r['elastic_max_kept_px'] for r in rs):.2f} | "
                f"{_rms(np.array([r['homography_rms_kept_px'] for r in rs])):.2f} | "
                f"{np.mean([r['kept_fraction'] for r in rs]):.0%} | "
                f"{np.mean([r['timings_s']['elastic'] for r in rs]):.2f} | {np.mean([r['timings_s']['total'] for r in rs]):.2f} |"
            )
    syn = [r for r in rows if r.get("what") == "synthetic"]
    if syn:
        lines += [
            "",
            "| phone px (µm) | RMS kept (bench px) | max kept | homography only | kept | elastic s |",
            "|---|---|---|---|---|---|",
        ]
        for r in syn:
            lines.append(
                f"| {r['phone_pixel_um']:.3f} | {r['elastic_rms_kept_px']:.3f} | {r['elastic_max_kept_px']:.2f} | "
                f"{r['homography_rms_kept_px']:.2f} | {r['kept_fraction']:.0%} | {r['timings_s']['elastic']:.2f} |"
            )
    for r in rows:
        if r.get("what") == "elastic":
            lines.append(
                f"elastic {r['field_px'][0]}×{r['field_px'][1]} field (phone 1024² at {r['phone_pixel_um']:.3f} µm): "
                f"wall median {r['elastic_s_median']:.3f} s (min {r['elastic_s_min']:.3f} s), CPU median "
                f"{r['elastic_cpu_s_median']:.3f} s, levels N = {r['levels']}"
            )
        elif r.get("what") == "fov20k-index":
            lines.append(
                f"20K mosaic coarse index: {r['seconds']:.1f} s (read {r['read']:.1f} s, SIFT {r['sift']:.1f} s), {r['features']} features"
            )
        elif r.get("what") == "fov20k-match":
            lines.append(
                f"20K match {'with' if r['prior'] else 'without'} stage prior: {r['seconds']:.2f} s, {r['inliers']} inliers, "
                f"centre error {r['centre_error_px']:.2f} px"
            )
        elif r.get("what") == "twin-mean-map":
            lines.append(
                f"mean shift map of {r['captures']} twin captures: stationary distortion RMS {r['true_stationary_rms_px']:.3f} px, "
                f"map error RMS {r['map_error_rms_px']:.3f} px (phone px, projective part removed)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(
        prog="python benchmarks/registration_accuracy.py", description=__doc__.splitlines()[0]
    )
    ap.add_argument("what", choices=["timing", "fov20k", "synthetic", "twin", "meanmap", "all"])
    ap.add_argument("--mean-map-captures", type=int, default=16, help="lung captures for meanmap")
    ap.add_argument("--figures", type=Path, default=None, help="write the documentation figures here")
    ap.add_argument("--per-sample", type=int, default=3, help="twin captures per sample type")
    ap.add_argument(
        "--phone-input", choices=["jpeg", "dng"], default="jpeg", help="twin: the phone's JPEG or its DNG"
    )
    ap.add_argument("--size", type=int, default=20000, help="mosaic side for fov20k")
    ap.add_argument("--json", action="store_true", help="also print one JSON object per result")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    if args.what in ("timing", "all"):
        rows += measure_timing()
    if args.what in ("synthetic", "all"):
        rows += measure_synthetic(figures=args.figures)
    if args.what in ("twin", "all"):
        rows += measure_twin(per_sample=args.per_sample, figures=args.figures, phone_input=args.phone_input)
    if args.what in ("meanmap", "all"):
        rows += [
            r
            for r in measure_twin(per_sample=args.mean_map_captures, samples=("lung",), figures=args.figures)
            if r["what"] == "twin-mean-map"
        ]
    if args.what in ("fov20k", "all"):
        rows += measure_fov20k(size=args.size)
    if args.json:
        for r in rows:
            sys.stdout.write(
                json.dumps(r, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n"
            )
    sys.stdout.write(_summary(rows) + "\n")
    sys.stdout.write(
        f"cpu threads: cv2 {cv2.getNumThreads()}, os.sched_getaffinity {len(os.sched_getaffinity(0))}\n"
    )
    return (
        0
        if all(
            not (isinstance(r.get("elastic_rms_kept_px"), float) and math.isnan(r["elastic_rms_kept_px"]))
            for r in rows
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
