"""Phone capture outputs: a real DNG (rawpy), the JPEG, settings, ground truth and illumination."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
import rawpy

from scopectl.twin import BenchtopModel, Illumination, PhoneGroundTruth, PhoneModel, make_slide
from scopectl.twin.illumination import battery_factors
from scopectl.twin.pairs import phone_on_grid, render_pair


@pytest.fixture(scope="module")
def capture_and_slide():  # type: ignore[no-untyped-def]
    slide = make_slide("pap", seed=4)
    cap = PhoneModel().capture(
        slide,
        center_x_um=1800.0,
        center_y_um=2100.0,
        illumination=Illumination.white(),
        seed=21,
        shape=(192, 256),
    )
    return cap, slide


def test_dng_decodes_with_the_right_tags(capture_and_slide) -> None:  # type: ignore[no-untyped-def]
    cap, _ = capture_and_slide
    with rawpy.imread(io.BytesIO(cap.dng)) as raw:
        assert raw.raw_image_visible.shape == (192, 256)
        assert raw.raw_pattern.tolist() == [[0, 1], [3, 2]]  # RGGB
        assert "".join(chr(raw.color_desc[i]) for i in raw.raw_pattern.ravel()) == "RGGB"
        assert list(raw.black_level_per_channel) == [64, 64, 64, 64]
        assert raw.white_level == 1023
        vals = raw.raw_image_visible
        assert int(vals.min()) >= 0 and int(vals.max()) <= 1023
        wb = np.array(raw.camera_whitebalance[:3])
        neutral = np.array(cap.settings["as_shot_neutral"])
        np.testing.assert_allclose(wb / wb[1], (1.0 / neutral) / (1.0 / neutral[1]), rtol=2e-3)
        # LibRaw derives its camera -> sRGB matrix from ColorMatrix1 exactly as the phone's processing does
        np.testing.assert_allclose(np.array(raw.color_matrix)[:, :3], PhoneModel().rgb_from_camera, atol=2e-3)
        decoded = raw.postprocess(
            use_camera_wb=True, no_auto_bright=True, adjust_maximum_thr=0, gamma=(2.4, 12.92), output_bps=8
        )
    # LibRaw's development of the DNG and the phone's JPEG agree in colour (the phone adds a tone curve)
    diff = np.abs(decoded.reshape(-1, 3).mean(axis=0) - cap.rgb.reshape(-1, 3).mean(axis=0))
    assert diff.max() < 20


def test_jpeg_is_the_rgb_and_settings_are_reported(capture_and_slide) -> None:  # type: ignore[no-untyped-def]
    cap, _ = capture_and_slide
    assert cap.jpeg[:2] == b"\xff\xd8"
    dec = cv2.cvtColor(cv2.imdecode(np.frombuffer(cap.jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(dec, cap.rgb)
    s = cap.settings
    assert s["iso"] == 100 and s["white_balance"] == "cloudy" and s["jpeg_quality"] == 92
    assert 1e-5 < s["exposure_s"] < 0.5
    json.dumps(s)  # serialisable


def test_ground_truth_round_trips_and_serialises(capture_and_slide) -> None:  # type: ignore[no-untyped-def]
    truth = capture_and_slide[0].truth
    rows, cols = np.meshgrid(np.linspace(0, 191, 7), np.linspace(0, 255, 9), indexing="ij")
    x, y = truth.to_slide_um(rows, cols)
    r2, c2 = truth.to_phone_px(x, y)
    assert np.abs(r2 - rows).max() < 1e-6 and np.abs(c2 - cols).max() < 1e-6
    again = PhoneGroundTruth.from_dict(json.loads(json.dumps(truth.to_dict(include_field=True))))
    x2, y2 = again.to_slide_um(rows, cols)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    # the centre pixel images the requested position up to the stage error; the scale is 1.12/2.77 µm
    xc, yc = truth.to_slide_um(np.array([95.5]), np.array([127.5]))
    assert abs(xc[0] - 1800.0) < 15 and abs(yc[0] - 2100.0) < 15
    assert truth.pixel_size_um == pytest.approx(1.12 / 2.77)
    d_r, d_c = truth.displacement_px(rows, cols)
    assert 0.0 < np.abs(np.hypot(d_r, d_c)).max() < 10.0  # a real but smooth warp
    with pytest.raises(ValueError, match="malformed"):
        PhoneGroundTruth.from_dict({"homography": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})


def test_ground_truth_aligns_the_phone_image_with_the_benchtop() -> None:
    slide = make_slide("blood", seed=8)
    pair = render_pair(slide, center_x_um=2500.0, center_y_um=1500.0, seed=3, phone_shape=(256, 256))
    ox, oy = pair.benchtop_origin_um
    p = 0.925
    shape = (80, 80)
    x0, y0 = ox + 40 * 0.37, oy + 40 * 0.37
    bench = BenchtopModel()
    assert bench.pixel_size_um == pair.benchtop_pixel_um
    # the benchtop on the same 0.925 µm grid (area-averaged) vs the phone resampled through the truth
    rows = ((y0 + np.arange(shape[0]) * p) - oy) / 0.37
    cols = ((x0 + np.arange(shape[1]) * p) - ox) / 0.37
    blur = cv2.GaussianBlur(pair.benchtop.astype(np.float32), (0, 0), 1.0)
    ref = cv2.remap(blur, *np.meshgrid(cols.astype(np.float32), rows.astype(np.float32)), cv2.INTER_LINEAR)

    def corr(truth: PhoneGroundTruth) -> float:
        cap = pair.phone
        moved = type(cap)(dng=cap.dng, jpeg=cap.jpeg, rgb=cap.rgb, settings=cap.settings, truth=truth)
        got = phone_on_grid(moved, x0_um=x0, y0_um=y0, shape=shape, pixel_size_um=p).astype(np.float64)
        a = ref[..., 1].ravel() - ref[..., 1].mean()
        b = got[..., 1].ravel() - got[..., 1].mean()
        return float(a @ b / np.sqrt((a @ a) * (b @ b)))

    exact = corr(pair.phone.truth)
    h = pair.phone.truth.homography.copy()
    h[0, :] += 2.0 * h[2, :]  # the same mapping shifted by 2 µm in x
    shifted = corr(PhoneGroundTruth.from_dict({**pair.phone.truth.to_dict(), "homography": h.tolist()}))
    assert exact > 0.8
    assert shifted < exact - 0.15


def test_battery_and_led_colours_change_the_light() -> None:
    np.testing.assert_allclose(battery_factors(4100.0), [1.0, 1.0, 1.0])
    low = battery_factors(3500.0)
    assert low[0] == 1.0 and low[2] < 0.5  # blue and green fade first
    slide = make_slide("lung", seed=2)
    phone = PhoneModel()
    kw = {"center_x_um": 2000.0, "center_y_um": 2000.0, "seed": 5, "shape": (64, 64)}
    full = phone.capture(slide, illumination=Illumination.white(battery_mv=4100.0), **kw)  # type: ignore[arg-type]
    weak = phone.capture(slide, illumination=Illumination.white(battery_mv=3500.0), **kw)  # type: ignore[arg-type]
    assert weak.settings["exposure_s"] > full.settings["exposure_s"]  # auto exposure compensates
    ratio = lambda c: c.rgb[..., 0].mean() / c.rgb[..., 2].mean()  # noqa: E731
    assert ratio(weak) > 1.1 * ratio(full)  # ... but not the colour: the image turns warm
    red = np.zeros((12, 3), np.uint8)
    red[:, 0] = 255
    only_red = phone.capture(
        slide, illumination=Illumination(colors=red, brightness=255, battery_mv=4100.0), **kw
    )  # type: ignore[arg-type]
    m = only_red.rgb.reshape(-1, 3).mean(axis=0)
    assert m[0] > 2 * m[2]
    with pytest.raises(ValueError, match="12, 3"):
        Illumination(colors=np.zeros((8, 3), np.uint8), brightness=10, battery_mv=4000.0)
