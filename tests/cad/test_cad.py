"""The printed parts of the smartphone microscope (``hardware_cad/``).

Renders every part with the Makefile (``openscad`` on the command line), then checks that

* each STL is a closed, consistently oriented solid with positive volume;
* each bounding box is the one the parameters give (the formulas below are written independently of
  the OpenSCAD code, from the design described in ``docs/build-guide.md``);
* the optical distances follow from the lens: the sample sits at the external lens's front focal
  plane (paraxial, through the cover glass), the LED ring at the maximally flat height under the
  diffuser, and the field is evenly lit;
* changing the focal length moves the sample plane in the rendered frame, an unusable lens is refused,
  and moving parts do not collide at the ends of their travel.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.external("openscad")

CAD_DIR = Path(__file__).resolve().parents[2] / "hardware_cad"
PARTS = (
    "phone_clamp",
    "stage_frame",
    "stage_z",
    "stage_y",
    "sample_tray",
    "ring_holder",
    "diffuser_retainer",
    "housing",
    "knob",
)
TOL_MM = 2e-3  # ASCII STL prints about six significant digits


# ----------------------------------------------------------------------------- running openscad


def _openscad(*args: str, cwd: Path = CAD_DIR, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openscad", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _defines(overrides: Mapping[str, float]) -> list[str]:
    out: list[str] = []
    for name, value in overrides.items():
        out += ["-D", f"{name}={value!r}"]
    return out


def read_report(tmp_path: Path, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Every parameter and computed value, as OpenSCAD evaluates them (``report.scad``)."""
    out = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.echo"
    proc = _openscad(*_defines(overrides or {}), "-o", str(out), "report.scad")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    prefix = "ECHO: SCOPECTL_CAD = "
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return {str(k): float(v) for k, v in json.loads(line[len(prefix) :])}


# ----------------------------------------------------------------------------- STL reading and checks


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (V, 3) float64
    triangles: np.ndarray  # (T, 3) int64 indices into vertices


def read_stl(path: Path) -> Mesh:
    """Read an ASCII or binary STL, merging identical vertices."""
    data = path.read_bytes()
    corners: list[tuple[float, float, float]] = []
    if len(data) >= 84 and len(data) == 84 + 50 * struct.unpack_from("<I", data, 80)[0]:
        count = struct.unpack_from("<I", data, 80)[0]
        for i in range(count):
            values = struct.unpack_from("<12f", data, 84 + 50 * i)
            corners += [(values[3 + 3 * k], values[4 + 3 * k], values[5 + 3 * k]) for k in range(3)]
    else:
        text = data.decode("ascii")
        assert text.lstrip().startswith("solid"), f"{path.name}: neither binary nor ASCII STL"
        for line in text.splitlines():
            words = line.split()
            if words and words[0] == "vertex":
                corners.append((float(words[1]), float(words[2]), float(words[3])))
    assert corners and len(corners) % 3 == 0, f"{path.name}: no triangles"
    index: dict[tuple[float, float, float], int] = {}
    tri = np.array([index.setdefault(c, len(index)) for c in corners], dtype=np.int64).reshape(-1, 3)
    verts = np.array(list(index), dtype=np.float64)
    return Mesh(verts, tri)


def solid_problems(mesh: Mesh) -> list[str]:
    """Why ``mesh`` is not a closed, consistently oriented solid (empty list when it is)."""
    problems: list[str] = []
    t = mesh.triangles
    degenerate = int(np.count_nonzero((t[:, 0] == t[:, 1]) | (t[:, 1] == t[:, 2]) | (t[:, 0] == t[:, 2])))
    if degenerate:
        problems.append(f"{degenerate} degenerate triangles")
    directed = Counter(
        (int(a), int(b)) for tri in t for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0]))
    )
    repeated = sum(1 for n in directed.values() if n > 1)
    if repeated:
        problems.append(f"{repeated} directed edges used twice (inconsistent orientation or non-manifold)")
    unmatched = sum(1 for (a, b) in directed if (b, a) not in directed)
    if unmatched:
        problems.append(f"{unmatched} edges without an opposite half-edge (holes)")
    return problems


def volume(mesh: Mesh) -> float:
    v = mesh.vertices[mesh.triangles]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def bbox(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    return mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)


# ----------------------------------------------------------------------------- the design, in Python


def derive(p: Mapping[str, float]) -> dict[str, float]:
    """The computed distances of the design, from the base parameters.

    Written from the design's description, not copied from ``params.scad``: the test compares both.
    """
    d: dict[str, float] = {}
    f = p["lens_focal_length"]
    d["magnification"] = p["phone_focal_length"] / f
    d["pixel_size_at_sample_um"] = p["phone_pixel_um"] * f / p["phone_focal_length"]
    # front focal distance in air, then the apparent depth of the sample under the cover glass
    d["lens_working_distance"] = f - p["lens_principal_depth"]
    d["sample_gap"] = d["lens_working_distance"] + p["coverslip_t"] - p["coverslip_t"] / p["glass_n"]
    aperture_r = min(p["lens_clear_d"], p["phone_focal_length"] / p["phone_f_number"]) / 2
    d["objective_na"] = aperture_r / math.hypot(aperture_r, f)
    d["led_circle_r"] = (p["ring_od"] / 2 + p["ring_id"] / 2) / 2
    d["ring_to_diffuser"] = maximally_flat_height(d["led_circle_r"], p["led_emission_m"])
    d["tube_id"] = p["ring_od"] + 2 * p["ring_fit"]
    d["tube_od"] = d["tube_id"] + 2 * p["tube_wall"]
    d["flange_d"] = d["tube_od"] + 14
    d["retainer_od"] = d["tube_od"] + 2 * p["clearance"] + 2 * p["wall"]
    # the z chain, from the top of the housing up
    d["z_led"] = p["base_t"] + p["tube_floor_t"] + p["ring_pcb_t"] + p["ring_led_h"]
    d["z_diffuser"] = d["z_led"] + d["ring_to_diffuser"]
    d["tube_h"] = d["z_diffuser"] - p["base_t"]
    d["z_retainer_top"] = d["z_diffuser"] + p["diffuser_t"] + p["retainer_t"]
    d["z_platform_bottom"] = d["z_retainer_top"] + p["z_gap"] + p["z_travel_down"]
    d["z_tray_top"] = d["z_platform_bottom"] + p["platform_t"] + p["slider_t"] + p["tray_t"]
    d["z_sample"] = d["z_tray_top"] + p["slide_proud"]
    d["z_lens_front"] = d["z_sample"] + d["sample_gap"]
    d["frame_h"] = d["z_clamp_bottom"] = d["z_lens_front"] - p["lens_vertex_recess"] - p["lens_lip_t"]
    d["clamp_plate_t"] = max(
        4.0, p["camera_island_h"] + p["lens_window_gap"] + p["lens_barrel_len"] + p["lens_lip_t"]
    )
    d["z_camera_window"] = d["z_clamp_bottom"] + d["clamp_plate_t"] - p["camera_island_h"]
    d["diffuser_to_sample"] = d["z_sample"] - d["z_diffuser"]
    d["lens_clearance_at_top"] = d["z_clamp_bottom"] - d["z_sample"] - p["coverslip_t"] - p["z_travel_up"]
    # plan view of the stage
    d["tray_dx"] = p["slide_w"] + 2 * p["tray_margin_x"]
    d["tray_dy"] = p["slide_d"] + 2 * p["tray_margin_y"]
    d["ys_x0"] = -(d["tray_dx"] / 2 + p["x_travel"] + p["clearance"])
    d["ys_x1"] = -d["ys_x0"] + p["block_w"]
    d["ys_xmin"] = d["ys_x0"] - p["ytab_w"]
    d["ys_dy"] = d["tray_dy"] + 2 * p["clearance"] + 2 * p["rail_w"]
    d["pf_xmin"] = d["ys_xmin"] - p["clearance"] - p["rail_w"]
    d["pf_xmax"] = d["ys_x1"] + p["clearance"] + p["rail_w"]
    d["pf_front"] = -(d["ys_dy"] / 2 + p["y_travel"] + p["clearance"] + p["block_w"])
    d["pf_back"] = d["ys_dy"] / 2 + p["y_travel"] + p["spring_gap"]
    d["y_wall_front"] = d["pf_back"] + p["zc_block_d"] + p["clearance"]
    d["y_frame_back"] = d["y_wall_front"] + p["wall_t"]
    d["zc_block_h"] = d["frame_h"] - p["z_travel_up"] - 1.0 - d["z_platform_bottom"]
    d["base_front"] = d["flange_d"] / 2 + 3
    return d


def maximally_flat_height(ring_r: float, m: float) -> float:
    """Height of a ring of cos^m emitters above a plane where the irradiance has zero curvature on axis.

    The azimuth-averaged irradiance is E(rho) ~ <(h^2 + R^2 + rho^2 - 2 R rho cos phi)^(-(m+3)/2)>;
    its rho^2 coefficient is proportional to (n/2 + 1) R^2 - (h^2 + R^2) with n = m + 3.
    """
    n = m + 3
    return math.sqrt((n / 2 + 1) * ring_r**2 - ring_r**2)


def irradiance(
    points_xy: np.ndarray, *, ring_r: float, height: float, m: float, leds: int = 12
) -> np.ndarray:
    """Irradiance on the diffuser plane from ``leds`` cos^m emitters on a circle (arbitrary units)."""
    angles = 2 * np.pi * np.arange(leds) / leds
    led_xy = ring_r * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    diff = points_xy[:, None, :] - led_xy[None, :, :]
    dist2 = (diff**2).sum(axis=2) + height**2
    # intensity cos^m(theta), projected on the plane with cos(theta), over distance squared
    cos_t = height / np.sqrt(dist2)
    result: np.ndarray = (cos_t ** (m + 1) / dist2).sum(axis=1)
    return result


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every part rendered by ``make -C hardware_cad`` into a temporary folder."""
    out = tmp_path_factory.mktemp("stl")
    proc = subprocess.run(
        ["make", "-C", str(CAD_DIR), "-j2", f"STL_DIR={out}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    paths = {part: out / f"{part}.stl" for part in PARTS}
    missing = [p for p, path in paths.items() if not path.is_file()]
    assert not missing, f"make did not render {missing}"
    return paths


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    return read_report(tmp_path_factory.mktemp("report"))


def expected_bboxes(p: Mapping[str, float]) -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
    d = derive(p)
    cx0 = p["camera_x"] - p["phone_width"] - p["phone_fit"]
    cx1 = p["camera_x"] + p["phone_fit"]
    bolt = p["clamp_bolt_dx"] + 5
    stage_top = p["platform_t"] + p["slider_t"] + p["tray_t"]
    return {
        "phone_clamp": (
            (min(cx0 - p["wall"], -bolt), -p["camera_y"] - p["phone_fit"] - p["wall"], 0.0),
            (
                max(cx1 + p["wall"], bolt),
                d["y_frame_back"],
                d["clamp_plate_t"] + p["phone_thickness"] + p["phone_fit"] + p["lip_t"],
            ),
        ),
        "stage_frame": (
            (-p["frame_w"] / 2, -d["base_front"], 0.0),
            (p["frame_w"] / 2, d["y_frame_back"], d["frame_h"]),
        ),
        "stage_z": (
            (d["pf_xmin"], d["pf_front"], 0.0),
            (d["pf_xmax"], d["pf_back"] + p["zc_block_d"] - p["clearance"], max(d["zc_block_h"], stage_top)),
        ),
        "stage_y": (
            (d["ys_xmin"], -d["ys_dy"] / 2, 0.0),
            (d["ys_x1"], d["ys_dy"] / 2, p["slider_t"] + p["tray_t"]),
        ),
        "sample_tray": (
            (-d["tray_dx"] / 2, -d["tray_dy"] / 2, 0.0),
            (d["tray_dx"] / 2, d["tray_dy"] / 2, p["tray_t"]),
        ),
        "ring_holder": ((-d["flange_d"] / 2,) * 2 + (0.0,), (d["flange_d"] / 2,) * 2 + (d["tube_h"],)),
        "diffuser_retainer": (
            (-d["retainer_od"] / 2,) * 2 + (0.0,),
            (d["retainer_od"] / 2,) * 2 + (p["retainer_t"] + 4.0,),
        ),
        "housing": (
            (-p["frame_w"] / 2, -d["base_front"], 0.0),
            (p["frame_w"] / 2, d["y_frame_back"], p["housing_h"]),
        ),
        "knob": ((-p["knob_d"] / 2,) * 2 + (0.0,), (p["knob_d"] / 2,) * 2 + (p["knob_t"],)),
    }


# ----------------------------------------------------------------------------- tests: the STLs


@pytest.mark.parametrize("part", PARTS)
def test_part_is_a_closed_solid_with_the_expected_bounding_box(
    part: str, rendered: dict[str, Path], report: dict[str, float]
) -> None:
    mesh = read_stl(rendered[part])
    assert solid_problems(mesh) == [], f"{part}.stl is not a closed solid"
    assert volume(mesh) > 0, f"{part}.stl has inward-facing triangles"
    lo, hi = bbox(mesh)
    exp_lo, exp_hi = expected_bboxes(report)[part]
    np.testing.assert_allclose(lo, exp_lo, atol=TOL_MM, err_msg=f"{part}: bounding box minimum")
    np.testing.assert_allclose(hi, exp_hi, atol=TOL_MM, err_msg=f"{part}: bounding box maximum")


def test_mesh_checks_catch_holes_and_flipped_faces(rendered: dict[str, Path]) -> None:
    mesh = read_stl(rendered["knob"])
    holed = Mesh(mesh.vertices, mesh.triangles[1:])
    assert any("holes" in p for p in solid_problems(holed))
    flipped = mesh.triangles.copy()
    flipped[0] = flipped[0, ::-1]
    assert any("orientation" in p for p in solid_problems(Mesh(mesh.vertices, flipped)))
    assert volume(Mesh(mesh.vertices, mesh.triangles[:, ::-1])) < 0


def test_binary_and_ascii_stl_read_alike(tmp_path: Path, rendered: dict[str, Path]) -> None:
    ascii_mesh = read_stl(rendered["knob"])
    binary = tmp_path / "knob.stl"
    v = ascii_mesh.vertices[ascii_mesh.triangles].astype("<f4")
    body = b"".join(struct.pack("<3f", 0, 0, 0) + tri.tobytes() + b"\0\0" for tri in v)
    binary.write_bytes(b"\0" * 80 + struct.pack("<I", len(v)) + body)
    mesh = read_stl(binary)
    assert mesh.triangles.shape == ascii_mesh.triangles.shape
    assert solid_problems(mesh) == []
    assert volume(mesh) == pytest.approx(volume(ascii_mesh), rel=1e-5)


# ----------------------------------------------------------------------------- tests: the optics


def test_computed_distances_match_the_design(report: dict[str, float]) -> None:
    for name, value in derive(report).items():
        if name in report:
            assert report[name] == pytest.approx(value, abs=1e-4), name


def test_make_report_prints_the_computed_distances(tmp_path: Path, report: dict[str, float]) -> None:
    proc = subprocess.run(
        ["make", "-s", "-C", str(CAD_DIR), "report", f"STL_DIR={tmp_path / 'stl'}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    printed = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert float(printed["magnification"]) == pytest.approx(report["magnification"])
    assert float(printed["ring_to_diffuser"]) == pytest.approx(report["ring_to_diffuser"])
    assert len(printed) == len(report)


def test_magnification_and_pixel_size_match_the_paper(report: dict[str, float]) -> None:
    # Rivenson et al. 2018: a 2.6 mm external lens gives a magnification of ~2.77 on the Lumia 1020
    assert report["magnification"] == pytest.approx(2.77, rel=0.01)
    assert report["pixel_size_at_sample_um"] == pytest.approx(0.40, rel=0.02)


def test_sample_is_at_the_front_focal_plane_through_the_cover_glass(report: dict[str, float]) -> None:
    p = report
    f = p["lens_focal_length"]
    # paraxial ray from the sample point at a small angle, through the cover glass, to the front
    # principal plane of the lens; the lens must then send it out parallel (image at infinity)
    air_gap = p["z_lens_front"] - p["z_sample"] - p["coverslip_t"]
    slope_air = 1e-3
    height = slope_air / p["glass_n"] * p["coverslip_t"] + slope_air * (air_gap + p["lens_principal_depth"])
    slope_out = slope_air - height / f
    # object-distance error it implies; OpenSCAD echoes six digits, the depth of field is ~3 µm
    defocus_mm = f * slope_out / slope_air
    assert abs(defocus_mm) < 1e-3, (
        "sample not at the front focal plane: the infinity-focused phone sees it blurred"
    )


def test_changing_the_focal_length_moves_the_sample_plane(tmp_path: Path) -> None:
    base = read_report(tmp_path)
    longer = read_report(tmp_path, {"lens_focal_length": 3.1})
    assert longer["z_lens_front"] - longer["z_sample"] == pytest.approx(
        base["z_lens_front"] - base["z_sample"] + 0.5, abs=1e-6
    )
    assert longer["magnification"] == pytest.approx(base["phone_focal_length"] / 3.1)
    # the rendered frame grows by the same 0.5 mm: the clamp and lens sit that much higher
    out = tmp_path / "frame.stl"
    proc = _openscad("-D", "lens_focal_length=3.1", "-o", str(out), "stage_frame.scad")
    assert proc.returncode == 0, proc.stderr
    _, hi = bbox(read_stl(out))
    assert hi[2] == pytest.approx(derive(longer)["frame_h"], abs=TOL_MM)
    assert hi[2] == pytest.approx(base["frame_h"] + 0.5, abs=TOL_MM)


def test_a_lens_too_short_for_the_focus_travel_is_refused(tmp_path: Path) -> None:
    # a 2.6 mm ball lens: principal planes at its centre, working distance only ~0.8 mm
    proc = _openscad("-D", "lens_principal_depth=1.77", "-o", str(tmp_path / "x.stl"), "phone_clamp.scad")
    assert proc.returncode != 0
    assert "would hit the cover glass" in proc.stderr


def test_focus_travel_and_clearance(report: dict[str, float]) -> None:
    assert report["z_travel_up"] >= 1.0
    assert report["z_travel_down"] >= 1.0
    assert report["lens_clearance_at_top"] >= report["min_lens_clearance"]


def test_led_ring_height_gives_the_flattest_irradiance(report: dict[str, float]) -> None:
    ring_r, h, m = report["led_circle_r"], report["ring_to_diffuser"], report["led_emission_m"]

    def curvature(height: float) -> float:
        e = irradiance(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), ring_r=ring_r, height=height, m=m)
        return float(abs(e[1:].mean() - e[0]) / e[0])

    assert curvature(h) < 1e-5
    assert curvature(0.8 * h) > 20 * curvature(h)
    assert curvature(1.25 * h) > 20 * curvature(h)


def test_field_of_view_is_evenly_lit(report: dict[str, float]) -> None:
    """Each field point sees the diffuser through the lens's acceptance cone; compare their brightness."""
    p = report
    cone = p["diffuser_to_sample"] * math.tan(math.asin(p["objective_na"]))
    assert p["fov_d"] / 2 + cone <= p["tube_id"] / 2, "the diffuser aperture does not fill the lens's cone"
    rng = np.random.default_rng(0)
    # sample the acceptance disc on the diffuser uniformly
    r = cone * np.sqrt(rng.random(4000))
    t = 2 * np.pi * rng.random(4000)
    disc = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    brightness = []
    for fx, fy in [(0.0, 0.0), (p["fov_d"] / 2, 0.0), (0.0, p["fov_d"] / 2), (-0.35, 0.35)]:
        e = irradiance(
            disc + np.array([fx, fy]),
            ring_r=p["led_circle_r"],
            height=p["ring_to_diffuser"],
            m=p["led_emission_m"],
        )
        brightness.append(float(e.mean()))
    spread = (max(brightness) - min(brightness)) / max(brightness)
    assert spread < 0.005


# ----------------------------------------------------------------------------- tests: other phones, fits


def test_clamp_for_another_phone(tmp_path: Path) -> None:
    """A phone with its camera near a corner and flush with the back still gives a closed clamp."""
    phone = {
        "phone_width": 75.2,
        "phone_thickness": 8.3,
        "camera_x": 12.0,
        "camera_y": 11.0,
        "camera_island_h": 0.0,
    }
    values = read_report(tmp_path, phone)
    out = tmp_path / "clamp.stl"
    proc = _openscad(*_defines(phone), "-o", str(out), "phone_clamp.scad")
    assert proc.returncode == 0, proc.stderr
    mesh = read_stl(out)
    assert solid_problems(mesh) == []
    lo, hi = bbox(mesh)
    exp_lo, exp_hi = expected_bboxes(values)["phone_clamp"]
    np.testing.assert_allclose(lo, exp_lo, atol=TOL_MM)
    np.testing.assert_allclose(hi, exp_hi, atol=TOL_MM)
    assert values["clamp_plate_t"] == 4.0  # flush camera: the plate's minimum thickness


def _placements(p: Mapping[str, float]) -> Iterator[tuple[str, str, str]]:
    """(name, part A placed, part B placed) for pairs that must not overlap at the ends of travel."""
    up, down = p["z_travel_up"], p["z_travel_down"]
    xt, yt = p["x_travel"], p["y_travel"]
    clamp = "translate([0, 0, z_clamp_bottom]) phone_clamp();"
    slide = (
        "translate([-slide_w / 2, -slide_d / 2, z_sample - slide_t]) cube([slide_w, slide_d, slide_t]);"
        "translate([-12, -12, z_sample]) cube([24, 24, coverslip_t]);"
    )
    for s in (-1, 1):  # opposite corners of the travel; the clamp's underside is flat
        tray = f"translate([{s * xt}, {s * yt}, {up}]) {{ translate([0, 0, z_tray_bottom]) sample_tray(); {slide} }}"
        yield f"clamp/tray+slide at x{s:+d} y{s:+d} top", clamp, tray
        yield (
            f"tray/y-slider at x{s:+d}",
            f"translate([{s * xt}, 0, z_tray_bottom + 0.001]) sample_tray();",
            "translate([0, 0, z_slider_bottom]) stage_y();",
        )
    for sy in (-1, 1):
        yield (
            f"clamp/y-slider at y{sy:+d} top",
            clamp,
            f"translate([0, {sy * yt}, z_slider_bottom + {up}]) stage_y();",
        )
        yield (
            f"y-slider/z-carriage at y{sy:+d}",
            f"translate([0, {sy * yt}, z_slider_bottom + 0.001]) stage_y();",
            "translate([0, 0, z_platform_bottom]) stage_z();",
        )
    frame = "stage_frame();"
    yield "clamp/z-carriage top", clamp, f"translate([0, 0, z_platform_bottom + {up}]) stage_z();"
    for dz in (up, -down):
        yield f"frame/z-carriage at {dz:+g}", frame, f"translate([0, 0, z_platform_bottom + {dz}]) stage_z();"
    yield (
        "ring+diffuser cap/z-carriage bottom",
        "translate([0, 0, base_t]) ring_holder();"
        "translate([0, 0, z_diffuser + diffuser_t + retainer_t]) mirror([0, 0, 1]) diffuser_retainer();",
        f"translate([0, 0, z_platform_bottom - {down}]) stage_z();",
    )
    yield (
        "focus knob/housing",
        f"translate([ear_x, y_ear, -knob_t - 1 - {down}]) knob();",
        ("translate([0, 0, -housing_h]) housing();"),
    )


def test_moving_parts_do_not_collide(tmp_path: Path, report: dict[str, float]) -> None:
    header = "ASSEMBLY = true;\n" + "".join(
        f"include <{CAD_DIR / name}.scad>\n" for name in ("params", *PARTS)
    )
    jobs = []
    for i, (name, a, b) in enumerate(_placements(report)):
        src = tmp_path / f"pair{i}.scad"
        src.write_text(f"{header}intersection() {{ union() {{ {a} }} union() {{ {b} }} }}\n")
        jobs.append((name, src))

    def run(job: tuple[str, Path]) -> tuple[str, subprocess.CompletedProcess[str]]:
        name, src = job
        # coarser circles render twice as fast; every clearance checked here is far above the 0.07 mm
        # by which a 24-gon departs from the knob's circle (the largest circle near a moving part)
        return name, _openscad("-D", "$fn=24", "-o", str(src.with_suffix(".stl")), str(src), cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(run, jobs))
    failed = [
        f"{name}: {proc.stderr[-500:]}" for name, proc in results if proc.returncode != 0 and not _empty(proc)
    ]
    assert failed == [], "openscad failed"
    collisions = [name for name, proc in results if not _empty(proc)]
    assert collisions == [], f"parts overlap: {collisions}"


def _empty(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode != 0 and "Current top level object is empty" in proc.stderr


# ----------------------------------------------------------------------------- the build guide tells the truth

BUILD_GUIDE = CAD_DIR.parent / "docs" / "build-guide.md"


def test_build_guide_numbers_match_the_model(report: dict[str, float]) -> None:
    """The table of computed distances and the drive screw lengths in docs/build-guide.md."""
    text = BUILD_GUIDE.read_text(encoding="utf-8")
    rows = re.findall(r"^\|[^|\n]*\|\s*`(\w+)`\s*\|\s*([-\d.]+)\s*\|\s*$", text, flags=re.M)
    assert len(rows) >= 10, "the build guide's table of computed distances is missing"
    for name, shown in rows:
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        assert report[name] == pytest.approx(float(shown), abs=0.6 * 10**-decimals), name
    for axis in "xyz":
        match = re.search(
            rf"^\| 1 \| M3 × (\d+) [^|]*\| {axis} drive\b|^\| 1 \| M3 × (\d+) [^|]*\| focus \({axis}\)",
            text,
            flags=re.M,
        )
        assert match, f"the bill of materials lists no {axis} drive screw"
        length = int(match.group(1) or match.group(2))
        assert length >= report[f"{axis}_screw_len"], f"{axis} drive screw too short for the model"
