"""Headless Chromium through Selenium, for the leaderboard page's browser test and its docs/BENCHMARK.md
screenshot. Uses the system's `chromium` and `chromedriver` (Debian: `apt-get install chromium
chromium-driver`), never a downloaded browser."""
from __future__ import annotations

import shutil

INSTALL = "apt-get install -y chromium chromium-driver (Debian) and pip install -e '.[test]'"


class BrowserMissing(RuntimeError):
    """Chromium, its driver or Selenium is not installed."""


def chromium(width: int = 1400, height: int = 900):
    """A headless Chromium WebDriver whose viewport is `width` x `height` CSS px. Runs as root too
    (no sandbox). Raises BrowserMissing naming what to install."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise BrowserMissing(f"selenium is not installed ({err}): {INSTALL}") from err
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        missing = " and ".join(name for name, path in (("chromium", binary), ("chromedriver", driver)) if path is None)
        raise BrowserMissing(f"{missing} not on PATH: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def horizontal_overflow(driver) -> int:
    """How many CSS px the open page is wider than its viewport (0: no horizontal scrollbar)."""
    return int(driver.execute_script(
        "const e = document.documentElement; return Math.max(0, e.scrollWidth - e.clientWidth);"))
