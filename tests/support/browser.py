"""A real headless Chromium for page tests (Debian's chromium + chromium-driver, selenium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = "Debian's chromium and chromium-driver are not installed"


@contextmanager
def chromium(width: int = 1500, height: int = 1100) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def ready(driver: Any) -> bool:
    """The page (and its deferred script) has loaded."""
    return bool(driver.execute_script("return document.readyState") == "complete")


def images_loaded(driver: Any) -> bool:
    return bool(
        driver.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
        )
    )
