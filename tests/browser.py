"""A real headless browser for page tests: Debian's Chromium and chromedriver, started by the test.

Nothing is downloaded at run time: the browser and driver are the system's
(`make setup` installs the Debian packages where it can). When they are missing,
tests that use the `browser` fixture are skipped and say why.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

import pytest

CHROMIUM = pathlib.Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = pathlib.Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
# Chromium as root in a container: no sandbox, no GPU, no /dev/shm, and no calls home.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def browser_missing_reason() -> str | None:
    """Why no browser test can run here, or None when Chromium, its driver and selenium are all present."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        return (f"no headless browser: {', '.join(missing)} not found (Debian: apt-get install chromium "
                "chromium-driver; or set CHROMIUM / CHROMEDRIVER)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed in this environment"
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator["selenium.webdriver.Chrome"]:  # noqa: F821
    """A fresh headless Chromium (its own profile directory), quit and cleaned up on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module; skips the test when no browser is installed."""
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


def image_sizes(driver) -> list[tuple[str, int, int]]:
    """(alt text, naturalWidth, naturalHeight) of every <img> on the page: 0 means it did not render."""
    return [(img.get_attribute("alt") or "", int(img.get_property("naturalWidth") or 0),
             int(img.get_property("naturalHeight") or 0))
            for img in driver.find_elements("tag name", "img")]


def wait_for(driver, condition, timeout: float = 30.0):
    """Polls `condition(driver)` until it returns something truthy (selenium's WebDriverWait)."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(condition)


def save_screenshot(driver, path: pathlib.Path, width: int | None = None) -> pathlib.Path:
    """A full-page PNG of the current page; `width` scales it down (kept small for docs/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    if width:
        from PIL import Image
        with Image.open(path) as image:
            if image.width > width:
                image.resize((width, round(image.height * width / image.width))).save(path, optimize=True)
    return path
