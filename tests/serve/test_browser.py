"""The viewer in a real browser: Debian's headless Chromium driven by Selenium, against the shared real server.

A clinic user logs in (and replaces the one-time password), creates a case, uploads a JPEG, sees the enhanced
image appear, uses the swipe slider and downloads the result; an expert writes the report; a user of another
clinic cannot reach the case; the capture page fits a phone screen.  Screenshots of every step are kept in a
folder under pytest's temporary path, named in the test output.
"""

from __future__ import annotations

import io
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from serve_support import Service, jpeg_bytes, sample_image

from scopectl.capabilities import CHROMIUM_FLAGS

pytestmark = pytest.mark.external("chromium")

WAIT_S = 60


class Browser:
    """One Chromium for the module, with its download folder and screenshot folder."""

    def __init__(self, driver: WebDriver, shots: Path, downloads: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.downloads = downloads
        self.count = 0

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def element_png(self, element_id: str) -> np.ndarray:
        data = self.driver.find_element(By.ID, element_id).screenshot_as_png
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)

    def wait(self, condition: Callable[[WebDriver], Any], what: str) -> Any:
        return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.1).until(condition, message=what)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def by_id(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)

    def log_in(self, service: Service, user: str) -> None:
        """Log in through the form; on the first login, replace the one-time password."""
        account = service.users[user]
        self.open(service.url + "/login")
        self.by_id("username").send_keys(account.name)
        self.by_id("password").send_keys(account.password)
        self.by_id("login").click()
        self.wait(
            lambda d: d.current_url.endswith(("/cases", "/account/password")), "the page after logging in"
        )
        if self.driver.current_url.endswith("/account/password"):
            self.shot(f"{user}-one-time-password")
            new = f"{user}-chose-this-password"
            self.by_id("current_password").send_keys(account.password)
            self.by_id("new_password").send_keys(new)
            self.by_id("new_password_again").send_keys(new)
            self.by_id("save-password").click()
            account.password = new
        self.wait(lambda d: d.current_url.endswith("/cases"), "the case list after logging in")

    def log_out(self) -> None:
        self.by_id("logout").click()
        self.wait(lambda d: "/login" in d.current_url and d.find_elements(By.ID, "login"), "the login page")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Browser]:
    shots = tmp_path_factory.mktemp("screenshots")
    downloads = tmp_path_factory.mktemp("downloads")
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, "--window-size=1280,900"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="scopectl-chromium-", dir=tmp_path_factory.getbasetemp())
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=DriverService("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(WAIT_S)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    try:
        yield Browser(driver, shots, downloads)
    finally:
        driver.quit()
        capture = request.config.pluginmanager.getplugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"browser test screenshots: {shots}")


def test_clinic_uploads_expert_views_compares_downloads_and_reports(
    service: Service, browser: Browser, tmp_path: Path
) -> None:
    d = browser.driver
    # 1. log in
    browser.log_in(service, "browser-a")
    browser.shot("case-list")
    # 2. create a case (the form is folded away once the clinic has cases)
    if not browser.by_id("new-case").get_attribute("open"):
        d.find_element(By.CSS_SELECTOR, "#new-case summary").click()
    browser.by_id("ref").send_keys("BR-1")
    browser.by_id("sample_type").send_keys("pap")
    browser.by_id("pixel_size_um").send_keys("0.925")
    browser.by_id("note").send_keys("Cervical smear, field clinic 3.")
    browser.by_id("create-case").click()
    browser.wait(lambda d: browser.by_id("case-title").text == "Case BR-1", "the new case's page")
    case_url = d.current_url
    browser.shot("case-created")
    assert browser.by_id("camera").get_attribute("capture") == "environment"  # the phone's camera
    # 3. upload a JPEG
    image = tmp_path / "smear 03.jpg"
    image.write_bytes(jpeg_bytes(sample_image(300, 400, seed=31)))
    browser.by_id("files").send_keys(str(image))
    browser.by_id("upload-button").click()
    browser.wait(lambda d: "/captures/" in d.current_url, "the capture page after the upload")
    capture_url = d.current_url
    # 4. the enhanced image appears
    browser.wait(
        lambda d: browser.by_id("viewer-root").get_attribute("data-enhanced") == "shown", "the enhanced image"
    )
    browser.wait(
        lambda d: d.execute_script("return window.scopectlTiming.firstTileMs") is not None, "a first tile"
    )
    time.sleep(0.5)  # let the tiles finish drawing for the screenshot
    browser.shot("enhanced-side-by-side")
    assert browser.by_id("status").text == "done"
    assert browser.by_id("bar-enhanced").text.endswith("µm")
    assert "pap-inverted" in browser.by_id("model-name").text
    assert "checked" in browser.by_id("model-card").text and "SSIM" in browser.by_id("model-card").text
    # 5. the swipe slider: the enhanced (inverted) image covers the part left of the slider
    browser.by_id("mode-swipe").click()
    slider = browser.by_id("swipe-slider")
    browser.wait(
        lambda d: d.execute_script("return window.scopectlViewers.swipe.world.getItemCount()") == 2,
        "both images",
    )

    def set_slider(value: int) -> np.ndarray:
        d.execute_script(
            "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
            slider,
            value,
        )
        browser.wait(
            lambda d: (
                abs(float(browser.by_id("viewer-root").get_attribute("data-swipe")) - value / 100) < 1e-6
            ),
            "the slider to apply",
        )
        time.sleep(0.4)
        return browser.element_png("view-swipe")

    all_input, all_enhanced = set_slider(0), set_slider(100)
    half = set_slider(50)
    slider.send_keys(Keys.ARROW_LEFT)  # the keyboard moves it too
    assert browser.by_id("viewer-root").get_attribute("data-swipe") == "0.49"
    browser.shot("swipe-slider")
    width = half.shape[1]
    left, right = slice(int(width * 0.25), int(width * 0.45)), slice(int(width * 0.55), int(width * 0.75))
    assert np.abs(all_input - all_enhanced)[:, left].mean() > 40, "the enhanced image should look different"
    assert np.abs(half[:, left] - all_enhanced[:, left]).mean() < 4
    assert np.abs(half[:, right] - all_input[:, right]).mean() < 4
    # 6. download the enhanced image
    browser.by_id("mode-side").click()
    browser.by_id("dl-enhanced").click()
    capture_id = capture_url.rsplit("/", 1)[1]
    target = browser.downloads / f"scopectl-{capture_id}-enhanced.ome.tif"
    browser.wait(
        lambda d: target.is_file() and not list(browser.downloads.glob("*.crdownload")), "the download"
    )
    with tifffile.TiffFile(target) as tif:
        assert tif.asarray().shape == (750, 1000, 3)
        pixels = ET.fromstring(tif.ome_metadata).find(".//{*}Pixels")
        assert pixels is not None and float(pixels.get("PhysicalSizeX", 0)) == pytest.approx(0.37)
    browser.log_out()
    # 7. the expert writes the report
    browser.log_in(service, "browser-expert")
    browser.open(capture_url)
    browser.wait(
        lambda d: browser.by_id("viewer-root").get_attribute("data-enhanced") == "shown", "the viewer"
    )
    browser.by_id("report-input").send_keys("NILM: negative for intraepithelial lesion or malignancy.")
    browser.by_id("save-report").click()
    browser.wait(lambda d: d.find_elements(By.ID, "report-text"), "the saved report")
    assert browser.by_id("report-text").text.startswith("NILM")
    browser.shot("report-written")
    browser.log_out()
    # the clinic reads it on the case page
    browser.log_in(service, "browser-a")
    browser.open(case_url)
    browser.shot("clinic-reads-report")
    assert browser.by_id("report-text").text.startswith("NILM")
    assert not d.find_elements(By.ID, "report-form")  # clinic users read reports, they do not write them
    browser.log_out()


def test_another_clinic_cannot_reach_the_case_and_the_viewer_fits_a_phone(
    service: Service, browser: Browser
) -> None:
    with service.client("browser-a") as c:
        case = c.get("/api/cases", params={"ref": "BR-1"}).json()
        assert case, "run with the first browser test"
        capture_id = c.get(f"/api/cases/{case[0]['id']}").json()["captures"][0]["id"]
    browser.log_in(service, "browser-b")
    assert (
        "BR-1" not in browser.by_id("case-list").text
        if browser.driver.find_elements(By.ID, "case-list")
        else True
    )
    for path in (f"/cases/{case[0]['id']}", f"/captures/{capture_id}"):
        browser.open(service.url + path)
        assert browser.by_id("status").text == "Not found"
    browser.shot("other-clinic-404")
    browser.log_out()

    browser.log_in(service, "browser-a")
    d = browser.driver
    # a phone: a 390-pixel-wide screen that honours the page's viewport meta tag, with touch
    d.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    d.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    try:
        browser.open(f"{service.url}/captures/{capture_id}")
        browser.wait(
            lambda d: browser.by_id("viewer-root").get_attribute("data-enhanced") == "shown", "the viewer"
        )
        time.sleep(0.5)
        browser.shot("phone-capture-page")
        assert d.execute_script("return document.documentElement.clientWidth") == 390
        assert d.execute_script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
        first = browser.by_id("view-input").rect
        second = browser.by_id("view-enhanced").rect
        assert second["y"] >= first["y"] + first["height"] - 1, "on a phone the two viewers are stacked"
        assert first["width"] > 300
        browser.open(
            f"{service.url}/cases/{c.get('/api/cases').json()[0]['id']}" if False else service.url + "/cases"
        )
        browser.shot("phone-case-list")
    finally:
        d.set_window_size(1280, 900)
        browser.log_out()
