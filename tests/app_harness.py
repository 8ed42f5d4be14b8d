"""Driving app.py as a user does: a server process, a real Chromium, strokes drawn with the mouse.

Shared by tests/test_app.py and bench/bench_app.py.
"""

import math
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (Playwright's own download cannot be fetched here)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CANVAS = "#canvas canvas"
LABEL = '#prediction [data-testid="label-output-value"]'  # the top label of gr.Label


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(log_path: Path, *flags: str, timeout: float = 180):
    """`python app.py --port P FLAGS` in a subprocess, run from `log_path`'s folder; yields its URL once it serves."""
    port = free_port()
    with open(log_path, "w") as log:
        command = [sys.executable, str(REPO_ROOT / "app.py"), "--port", str(port), *flags]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(process, url, log_path, timeout)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_serving(process: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with status {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.2)  # polling interval: the server is not up yet
    raise TimeoutError(f"app.py did not answer at {url} within {timeout} s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def chromium_page(url: str):
    """A page of `url` in headless Chromium, once the drawing canvas is on it."""
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        # Debian's chromium where it is installed (.ci/run installs it), else the one `playwright install` fetched
        executable = str(CHROMIUM) if CHROMIUM.exists() else None
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Error as error:
            raise FileNotFoundError(
                f"No Chromium to drive ({error.message.splitlines()[0]}): run `apt-get install chromium` or "
                "`python -m playwright install --with-deps chromium`. The browser tests do not skip without one."
            ) from None
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            page.wait_for_selector(CANVAS)
            yield page
        finally:
            browser.close()


def vertical_stroke(box: dict) -> list[tuple[float, float]]:
    """A "1": top to bottom through the middle of the canvas."""
    x = box["x"] + box["width"] / 2
    return [(x, box["y"] + box["height"] * (0.2 + 0.6 * step / 20)) for step in range(21)]


def closed_loop(box: dict) -> list[tuple[float, float]]:
    """A "0": a tall ellipse drawn once around, ending where it began."""
    center_x, center_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    radius_x, radius_y = box["width"] * 0.2, box["height"] * 0.3
    angles = [2 * math.pi * step / 40 for step in range(41)]
    return [(center_x + radius_x * math.sin(angle), center_y - radius_y * math.cos(angle)) for angle in angles]


def draw(page, points: list[tuple[float, float]]) -> None:
    """One stroke with the mouse: press at the first point, move through the others, release."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point)
    page.mouse.up()


def clear_canvas(page) -> None:
    """Press Clear and wait until the label is gone."""
    page.get_by_role("button", name="Clear").click()
    page.locator(LABEL).wait_for(state="detached")


def wait_for_label(page, text: str, timeout_ms: float = 60_000) -> None:
    """Wait until the top label reads `text`, checking every animation frame (so timings are not rounded up)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        page.wait_for_function(
            "([selector, text]) => document.querySelector(selector)?.textContent.trim() === text",
            arg=[LABEL, text],
            polling="raf",
            timeout=timeout_ms,
        )
    except PlaywrightTimeoutError:
        shown = page.locator(LABEL).all_inner_texts() or "no label"
        raise AssertionError(f"The label did not read {text!r} within {timeout_ms / 1000:.0f} s: {shown}.") from None
