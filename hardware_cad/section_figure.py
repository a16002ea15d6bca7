"""Draw the section of the microscope through its optical axis: ``docs/figures/hw-section.svg``.

Each printed part is cut by OpenSCAD (``projection(cut = true)`` of the part placed as in ``assembly.scad``)
in the plane x = 0, which contains the optical axis and the stage's y travel; the slide, cover glass, lens,
diffuser, LED ring and phone are drawn from the computed distances that ``report.scad`` prints.

Run ``make -C hardware_cad figure`` (or ``python3 hardware_cad/section_figure.py [OUT.svg] [-D name=value ...]``).
Needs ``openscad``; uses only the Python standard library.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CAD = Path(__file__).resolve().parent
DEFAULT_OUT = CAD.parent / "docs" / "figures" / "hw-section.svg"

# part file, how assembly.scad places it, fill colour
PLACED = [
    ("housing", "translate([0, 0, -housing_h]) housing();", "#9aa0a6"),
    ("stage_frame", "stage_frame();", "#c8ccd0"),
    ("ring_holder", "translate([0, 0, base_t]) ring_holder();", "#3c4043"),
    (
        "diffuser_retainer",
        "translate([0, 0, z_diffuser + diffuser_t + retainer_t]) mirror([0, 0, 1]) diffuser_retainer();",
        "#3c4043",
    ),
    ("stage_z", "translate([0, 0, z_platform_bottom]) stage_z();", "#4a7ab5"),
    ("stage_y", "translate([0, 0, z_slider_bottom]) stage_y();", "#8fb8e0"),
    ("sample_tray", "translate([0, 0, z_tray_bottom]) sample_tray();", "#e8a33d"),
    ("phone_clamp", "translate([0, 0, z_clamp_bottom]) phone_clamp();", "#5f6368"),
]
SCALE = 6.0  # px per mm
Y_RANGE = (-76.0, 125.0)  # mm shown across (the phone runs off to the right)
Z_RANGE = (-36.0, 78.0)


def openscad(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(
        ["openscad", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"openscad {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stderr


def report(defines: list[str], tmp: Path) -> dict[str, float]:
    out = tmp / "report.echo"
    openscad([*defines, "-o", str(out), str(CAD / "report.scad")], tmp)
    line = next(ln for ln in out.read_text().splitlines() if ln.startswith("ECHO: SCOPECTL_CAD = "))
    return {str(k): float(v) for k, v in json.loads(line.split(" = ", 1)[1])}


def section_paths(
    part: str, placement: str, defines: list[str], tmp: Path
) -> list[list[tuple[float, float]]]:
    """Closed outlines of ``part`` cut by the plane x = 0, as (y, z) points in mm."""
    src = tmp / f"{part}.scad"
    src.write_text(
        "ASSEMBLY = true;\n"
        f"include <{CAD / 'params.scad'}>\ninclude <{CAD / part}.scad>\n"
        # (x, y, z) -> (y, z, x): the cut at the new z = 0 is the plane x = 0
        f"projection(cut = true) multmatrix([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]) {{ {placement} }}\n"
    )
    out = tmp / f"{part}.svg"
    openscad([*defines, "-o", str(out), str(src)], tmp)
    text = out.read_text()
    outlines: list[list[tuple[float, float]]] = []
    for d in re.findall(r'd="([^"]*)"', text):
        for chunk in re.split(r"[Mm]", d):
            pts = re.findall(r"(-?[\d.e+-]+),(-?[\d.e+-]+)", chunk)
            if pts:
                # OpenSCAD's SVG export flips the vertical axis
                outlines.append([(float(a), -float(b)) for a, b in pts])
    return outlines


def to_px(y_mm: float, z_mm: float) -> tuple[float, float]:
    return (y_mm - Y_RANGE[0]) * SCALE + 20, (Z_RANGE[1] - z_mm) * SCALE + 50


def poly(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in (to_px(a, b) for a, b in points))


def rect(y0: float, z0: float, y1: float, z1: float, fill: str, extra: str = "") -> str:
    pts = [(y0, z0), (y1, z0), (y1, z1), (y0, z1)]
    return f'<polygon points="{poly(pts)}" fill="{fill}" {extra}/>'


def dimension(z0: float, z1: float, y: float, label: str) -> str:
    """A vertical dimension line at ``y`` from ``z0`` to ``z1``, labelled on its left."""
    x, p0 = to_px(y, z0)
    _, p1 = to_px(y, z1)
    return (
        f'<line x1="{x:.1f}" y1="{p0:.1f}" x2="{x:.1f}" y2="{p1:.1f}" stroke="#c5221f" stroke-width="1.5" '
        f'marker-start="url(#arrow)" marker-end="url(#arrow)"/>'
        f'<text x="{x - 4:.1f}" y="{(p0 + p1) / 2 + 4:.1f}" fill="#c5221f" text-anchor="end">{label}</text>'
    )


def leader(y0: float, y1: float, z: float, colour: str = "#80868b", dash: str = "3 3") -> str:
    x0, zz = to_px(y0, z)
    x1, _ = to_px(y1, z)
    return (
        f'<line x1="{x0:.1f}" y1="{zz:.1f}" x2="{x1:.1f}" y2="{zz:.1f}" stroke="{colour}" stroke-width="0.8" '
        f'stroke-dasharray="{dash}"/>'
    )


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv and not argv[0].startswith("-") else DEFAULT_OUT
    defines = [a for a in argv if a != str(out)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        p = report(defines, tmp)
        sections = {name: section_paths(name, placement, defines, tmp) for name, placement, _ in PLACED}
    width = (Y_RANGE[1] - Y_RANGE[0]) * SCALE + 40
    height = (Z_RANGE[1] - Z_RANGE[0]) * SCALE + 110
    body: list[str] = []
    for name, _, colour in PLACED:
        path = " ".join("M " + poly(o).replace(" ", " L ") + " Z" for o in sections[name])
        body.append(
            f'<path d="{path}" fill="{colour}" fill-rule="evenodd" stroke="#202124" stroke-width="0.6"/>'
        )
    # parts that are not printed
    s, c = p["z_sample"], p["coverslip_t"]
    body.append(rect(-p["slide_d"] / 2, s - p["slide_t"], p["slide_d"] / 2, s, "#cde8f6", 'stroke="#5f9ea0"'))
    body.append(rect(-11, s, 11, s + c, "#e6f4fb", 'stroke="#5f9ea0"'))
    front = p["z_lens_front"] - p["lens_vertex_recess"]
    body.append(
        rect(-p["lens_barrel_d"] / 2, front, p["lens_barrel_d"] / 2, front + p["lens_barrel_len"], "#f6c945")
    )
    zd = p["z_diffuser"]
    body.append(
        rect(
            -p["tube_id"] / 2,
            zd,
            p["tube_id"] / 2,
            zd + max(p["diffuser_t"], 0.4),
            "#ffffff",
            'stroke="#202124" stroke-width="0.6"',
        )
    )
    led_top = p["z_led"]
    pcb_bottom = led_top - p["ring_led_h"] - p["ring_pcb_t"]
    for side in (-1, 1):
        y0, y1 = sorted((side * p["ring_id"] / 2, side * p["ring_od"] / 2))
        body.append(rect(y0, pcb_bottom, y1, pcb_bottom + p["ring_pcb_t"], "#1e8e3e"))
        r = p["led_circle_r"]
        body.append(
            rect(
                side * r - 2.5,
                led_top - p["ring_led_h"],
                side * r + 2.5,
                led_top,
                "#fff7c2",
                'stroke="#202124" stroke-width="0.6"',
            )
        )
    back = p["z_phone_back"]
    top_y = -p["camera_y"]
    body.append(
        rect(
            top_y,
            back,
            top_y + p["phone_length"],
            back + p["phone_thickness"],
            "none",
            'stroke="#202124" stroke-width="1.2" stroke-dasharray="6 3"',
        )
    )
    isl = p["camera_island_l"] / 2
    body.append(
        rect(-isl, back - p["camera_island_h"], isl, back, "none", 'stroke="#202124" stroke-width="1.2"')
    )
    ax, az0 = to_px(0, led_top)
    _, az1 = to_px(0, back)
    body.append(
        f'<line x1="{ax:.1f}" y1="{az0:.1f}" x2="{ax:.1f}" y2="{az1:.1f}" stroke="#c5221f" '
        'stroke-width="1" stroke-dasharray="8 3 2 3"/>'
    )
    # dimensions on the left, with extension lines to the features they measure
    for z, reach in (
        (led_top, -p["led_circle_r"] - 2.5),
        (zd, -p["tube_id"] / 2),
        (s, -p["slide_d"] / 2),
        (front, -p["lens_barrel_d"] / 2),
    ):
        body.append(leader(-68.0, reach, z, "#c5221f"))
    body.append(dimension(led_top, zd, -45.0, f"{p['ring_to_diffuser']:.1f} mm"))
    body.append(dimension(zd, s, -55.0, f"{p['diffuser_to_sample']:.1f} mm"))
    body.append(dimension(s, front, -65.0, f"{p['sample_gap']:.2f} mm"))
    # labels on the right, with leader lines to the parts
    labels = [
        (back + p["phone_thickness"] / 2, 40.0, "phone, screen up"),
        (
            p["z_clamp_bottom"] + 1.0,
            3.0,
            f"phone clamp and external lens (f = {p['lens_focal_length']:g} mm)",
        ),
        (s - 0.6, 12.0, "slide and cover glass"),
        (p["z_tray_top"] - p["tray_t"] / 2, 16.0, "sample tray (x)"),
        (p["z_tray_top"] - p["tray_t"] - p["slider_t"] / 2, 22.0, "y slider"),
        (p["z_platform_bottom"] + p["platform_t"] / 2, 30.0, "focus carriage (z) on the frame's dovetail"),
        (zd + 0.5, p["tube_id"] / 2, f"diffuser ({p['diffuser_t'] * 1000:.0f} µm)"),
        ((zd + led_top) / 2, p["tube_od"] / 2, "ring holder (black ABS)"),
        (led_top - 1.0, p["led_circle_r"] + 2.5, "NeoPixel ring, LEDs up"),
        (p["base_t"] / 2, 40.0, "stage frame"),
        (-15.0, 40.0, "housing: board, LiPo cell, boost"),
    ]
    for z, reach, text in labels:
        body.append(leader(reach, 60.0, z, dash="1 0"))
        x, yy = to_px(61.0, z)
        body.append(f'<text x="{x:.1f}" y="{yy + 4:.1f}">{text}</text>')
    title = (
        f"Section through the optical axis (x = 0), to scale: f = {p['lens_focal_length']:g} mm lens, "
        f"magnification {p['magnification']:.2f}, {p['pixel_size_at_sample_um']:.3f} µm per pixel at the sample"
    )
    svg = f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}"
     font-family="DejaVu Sans, Arial, sans-serif" font-size="12">
<title>scopectl smartphone microscope: section through the optical axis</title>
<desc>Generated by hardware_cad/section_figure.py from the OpenSCAD model; do not edit by hand.</desc>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
<path d="M 0 0 L 10 5 L 0 10 z" fill="#c5221f"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="28" font-size="14" font-weight="bold">{title}</text>
{chr(10).join(body)}
</svg>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg, encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
