"""Headless Chromium for the UI tests, and the few steps every page test repeats."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def chromium() -> webdriver.Chrome:
    """Headless Debian chromium; the caller quits it."""
    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    assert chromium and driver_bin, "scripts/setup installs chromium and chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(driver_bin))


def shoot(d: webdriver.Chrome, tmp: Path, name: str) -> None:
    out = tmp / "screenshots"
    out.mkdir(exist_ok=True)
    d.save_screenshot(str(out / f"{name}.png"))
    if os.environ.get("SHOAL_UI_SCREENSHOTS") == "docs":
        docs = Path(__file__).parents[2] / "docs" / "ui"
        docs.mkdir(exist_ok=True)
        shutil.copy(out / f"{name}.png", docs / f"{name}.png")


def text_appears(d: webdriver.Chrome, needle: str) -> None:
    try:
        wait = WebDriverWait(d, 15, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(lambda d: needle in d.find_element(By.ID, "data").text)
    except TimeoutException:
        raise AssertionError(f"{needle!r} not in {d.find_element(By.ID, 'data').text!r}") from None


def search(d: webdriver.Chrome, query: str) -> None:
    box = d.find_element(By.ID, "q")
    box.clear()
    box.send_keys(query, Keys.ENTER)  # the keyboard alone submits the form


