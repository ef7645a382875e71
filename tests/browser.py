"""Headless Chromium (Debian's ``chromium`` and ``chromedriver``, driven by Selenium) for the tests
that look at the Dagster UI the way a person does. Nothing is downloaded at test time: the driver
is named by path, so Selenium Manager never runs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def missing_browser() -> str | None:
    """Why no browser test can run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install installs the test extra)"
    if not any(shutil.which(b) for b in CHROMIUM):
        return "no chromium on PATH: `make test` installs Debian's chromium and chromium-driver when run as root; else apt-get install them"
    if not shutil.which("chromedriver"):
        return "no chromedriver on PATH: apt-get install chromium-driver"
    return None


class Browser:
    """One headless Chromium window on a local Dagster webserver."""

    def __init__(self, base_url: str, shots: Path, width: int = 1600, height: int = 1000) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        opts = Options()
        opts.binary_location = next(shutil.which(b) for b in CHROMIUM if shutil.which(b))
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}"):
            opts.add_argument(a)
        self.driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        self.base_url = base_url.rstrip("/")
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.driver.quit()

    def text(self) -> str:
        return self.driver.find_element("tag name", "body").text

    def open(self, path: str, *expect: str, timeout: float = 60) -> str:
        """Load a page and wait until every expected text is shown; returns the page's text."""
        self.driver.get(self.base_url + path)
        return self.wait_for(*expect, timeout=timeout)

    def wait_for(self, *expect: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            self._dismiss_dialogs()
            text = self.text()
            if all(e in text for e in expect):
                return text
            time.sleep(0.5)
        missing = [e for e in expect if e not in text]
        self.screenshot("timeout")
        raise AssertionError(f"{self.driver.current_url}: not shown within {timeout:.0f}s: {missing}\n--- page text ---\n{text[:3000]}")

    def _dismiss_dialogs(self) -> None:
        # Dagster's first-visit "join the community" dialog covers the page; a person clicks Skip.
        for b in self.driver.find_elements("xpath", "//div[@role='dialog']//button[normalize-space()='Skip']"):
            if b.is_displayed():
                b.click()

    def click_row_button(self, label: str, button: str, timeout: float = 30) -> None:
        """Click the ``button`` in the table row whose first cell says ``label`` (a metadata entry),
        once it is there and nothing covers it (a dialog is cleared first)."""
        from selenium.common.exceptions import ElementClickInterceptedException, NoSuchElementException

        xp = f"//tr[td[1][normalize-space()='{label}']]//*[contains(normalize-space(text()), '{button}')]"
        deadline = time.time() + timeout
        while True:
            self._dismiss_dialogs()
            try:
                el = self.driver.find_element("xpath", xp)
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
                el.click()
                return
            except (ElementClickInterceptedException, NoSuchElementException):
                if time.time() > deadline:
                    self.screenshot("click_failed")
                    raise
                time.sleep(0.3)

    def wait_for_dialog_shown(self, timeout: float = 10) -> None:
        """Until the open dialog has finished fading in (opacity 1), so a screenshot shows it."""
        js = (
            "const d = document.querySelector(\"div[role='dialog']\"); if (!d) return false;"
            "let e = d; while (e) { if (parseFloat(getComputedStyle(e).opacity) < 1) return false; e = e.parentElement; } return true;"
        )
        self._until(lambda: self.driver.execute_script(js), timeout, "the dialog to be shown")

    def assert_fully_visible(self, text: str, timeout: float = 10) -> None:
        """The element showing exactly ``text`` lies inside every clipping box around it (a table
        column not cut off by its container)."""
        js = (
            "const xp = `//*[normalize-space(text())=${JSON.stringify(arguments[0])}]`;"
            "const el = document.evaluate(xp, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;"
            "if (!el) return 'not found'; const r = el.getBoundingClientRect();"
            "if (r.width === 0) return 'not rendered'; if (r.right > window.innerWidth + 1) return `right edge ${r.right} past the window`;"
            "let a = el.parentElement; while (a) { const s = getComputedStyle(a);"
            "  if (s.overflowX !== 'visible') { const b = a.getBoundingClientRect();"
            "    if (r.right > b.right + 1 || r.left < b.left - 1) return `clipped by ${a.tagName}.${a.className}`; }"
            "  a = a.parentElement; } return 'ok';"
        )
        last = {"why": ""}

        def ok() -> bool:
            last["why"] = self.driver.execute_script(js, text)
            return last["why"] == "ok"

        try:
            self._until(ok, timeout, f"{text!r} fully visible")
        except AssertionError as e:
            raise AssertionError(f"{e}: {last['why']}") from None

    def _until(self, condition, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while not condition():
            if time.time() > deadline:
                self.screenshot("timeout")
                raise AssertionError(f"{self.driver.current_url}: waited {timeout:.0f}s for {what}")
            time.sleep(0.2)

    def dialog_images(self, timeout: float = 20) -> list[tuple[int, int]]:
        """(natural width, height) of the images shown in the open dialog, once they have loaded."""
        deadline = time.time() + timeout
        sizes: list[tuple[int, int]] = []
        while time.time() < deadline:
            imgs = self.driver.find_elements("xpath", "//div[@role='dialog']//img")
            sizes = [(int(i.get_property("naturalWidth") or 0), int(i.get_property("naturalHeight") or 0)) for i in imgs]
            if sizes and all(w > 0 for w, _ in sizes):
                return sizes
            time.sleep(0.5)
        return sizes

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path
