"""The report in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by selenium) opens the file from disk with the network disabled; no console errors, every image
decoded, a screenshot that is not blank.

Skipped only when no Chromium binary is installed. Install (Debian/Ubuntu):
``apt-get install -y chromium chromium-driver`` and ``pip install selenium``.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.report import build_report
from tests.test_report import RUN, make_run

DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "report-screenshot.png"


def _binary(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for n in names:
        found = shutil.which(n) or (f"/usr/bin/{n}" if os.path.exists(f"/usr/bin/{n}") else None)
        if found:
            return found
    return None


CHROMIUM = _binary("ACTSCAN_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _binary("ACTSCAN_CHROMEDRIVER", "chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary (install: apt-get install -y chromium chromium-driver; "
           "pip install selenium)")


@pytest.fixture(scope="module")
def driver():
    # A browser is installed, so selenium is required: its absence fails, it does not skip.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-sync", "--disable-component-update", "--disable-default-apps",
                "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        opts.add_argument(arg)  # the proxy is a dead end: any network request would fail loudly
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER) if CHROMEDRIVER else Service()
    drv = webdriver.Chrome(options=opts, service=service)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def test_report_renders_in_chromium(tmp_path, driver) -> None:
    from PIL import Image

    root = tmp_path / "data"
    make_run(root)
    path = Path(build_report(str(root), RUN, "embedded-mnist").path)
    driver.get(path.as_uri())
    state = driver.execute_script("return document.readyState")
    assert state == "complete"
    assert driver.title.startswith("actscan report: run r1")

    images = driver.execute_script(
        "return Array.from(document.images).map(i => "
        "({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))")
    assert len(images) == 5, images
    bad = [i for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not bad, f"images not loaded: {bad}"

    sections = driver.execute_script(
        "return Array.from(document.querySelectorAll('section[id]')).map(s => s.id)")
    assert sections == ["run", "attacks", "auroc", "paper", "a3", "figures", "top"]
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert [r for r in resources if not r.startswith("data:")] == []

    logs = driver.get_log("browser")
    errors = [e for e in logs if e.get("level") in ("SEVERE", "ERROR")]
    assert not errors, f"console errors: {errors}"

    png = driver.get_screenshot_as_png()
    with Image.open(io.BytesIO(png)) as im:
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.shape[0] > 500 and px.shape[1] > 500 and px.std() > 0
    shot = tmp_path / "report-screenshot.png"
    shot.write_bytes(png)
    print(f"\nscreenshot: {shot}")
    if os.environ.get("ACTSCAN_SAVE_SCREENSHOT"):  # refresh the committed copy on request only
        DOCS_SCREENSHOT.write_bytes(png)
        print(f"screenshot copied to: {DOCS_SCREENSHOT}")
