"""space/browser: the static page that runs the model in the browser, driven in a real headless Chromium.

The page is built from its sources (esbuild, bundling transformers.js and ONNX Runtime's WASM files) and served
with a staged model folder (the shipped checkpoint's plain-ViT export and its onnx/ files) over loopback HTTP:
nothing is fetched from elsewhere.
"""

import functools
import subprocess
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from app_harness import (
    CANVAS, LABEL, chromium_page, clear_canvas, closed_loop, draw, free_port, vertical_stroke, wait_for_label,
)
from PIL import Image

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # builds the page with npm and drives a real browser

PAGE_DIR = REPO_ROOT / "space" / "browser"
LOCAL_MODEL = "mnist-vit"  # ?local_model=NAME loads models/NAME/ beside the page
MESSAGE = "#message"


def build_page() -> Path:
    """`npm run build` in space/browser; returns the built folder."""
    if not (PAGE_DIR / "node_modules").is_dir():
        raise FileNotFoundError(
            f"{PAGE_DIR} has no node_modules: run `ONNXRUNTIME_NODE_INSTALL=skip npm ci` there (.ci/run does)."
        )
    result = subprocess.run(["npm", "run", "build"], cwd=PAGE_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return PAGE_DIR / "dist"


def site_with_model(page: Path, model_folder: Path, site: Path) -> Path:
    """A folder to serve: the built page, and the model folder as models/LOCAL_MODEL/ (links, no copies)."""
    for item in page.iterdir():
        (site / item.name).symlink_to(item)
    (site / "models").mkdir()
    (site / "models" / LOCAL_MODEL).symlink_to(model_folder)
    return site


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@contextmanager
def serving(folder: Path):
    """`folder` over HTTP on a free loopback port, in a thread; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(QuietHandler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def page_with_local_model(model_folder: Path, site: Path):
    """The built page in Chromium, loading `model_folder` from the same loopback server."""
    with serving(site_with_model(build_page(), model_folder, site)) as url:
        with chromium_page(f"{url}?local_model={LOCAL_MODEL}") as page:
            yield page


def upload(page, path: Path) -> None:
    page.set_input_files("#upload", str(path))


@pytest.fixture(scope="module")
def page(staged, tmp_path_factory):
    with page_with_local_model(staged, tmp_path_factory.mktemp("site")) as page:
        yield page


def test_drawn_digits_are_read(page):
    box = page.locator(CANVAS).bounding_box()
    draw(page, vertical_stroke(box))
    wait_for_label(page, "1")
    assert page.locator("#top3 li").count() == 3

    clear_canvas(page)
    draw(page, closed_loop(box))
    wait_for_label(page, "0")


def test_everything_comes_from_the_page_folder(page):
    """The bundle, ONNX Runtime's WASM files and the model: no CDN, no Hub."""
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Model: ')")  # loaded
    fetched = page.evaluate("performance.getEntriesByType('resource').map(entry => entry.name)")
    origin = page.url.split("?")[0]
    assert any(url.endswith("/ort/ort-wasm-simd-threaded.wasm") for url in fetched)
    assert any(url.endswith(f"/models/{LOCAL_MODEL}/onnx/model.onnx") for url in fetched)
    assert [url for url in fetched if not url.startswith(origin)] == []


def test_an_uploaded_scan_is_read(page, test_pictures, tmp_path):
    """A test digit as a scan: black ink on white paper, larger than MNIST's 28x28, the digit off-centre."""
    paper = Image.new("L", (300, 240), 235)
    digit = Image.eval(test_pictures[0], lambda value: 255 - value).resize((140, 140), Image.LANCZOS)
    paper.paste(digit, (30, 70), mask=test_pictures[0].resize((140, 140), Image.LANCZOS))
    path = tmp_path / "scan.jpg"
    paper.convert("RGB").save(path, quality=85)
    clear_canvas(page)
    upload(page, path)
    wait_for_label(page, "7")  # the first MNIST test digit


def test_a_file_that_is_not_a_picture_gets_a_sentence_and_the_page_keeps_working(page, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture, whatever its name says")
    upload(page, path)
    page.wait_for_function(f"document.querySelector('{MESSAGE}').textContent.includes('not a picture')")
    assert page.locator(MESSAGE).inner_text().endswith("choose a PNG, JPEG, WebP, GIF or BMP of a digit.")
    assert page.locator(LABEL).count() == 0

    draw(page, vertical_stroke(page.locator(CANVAS).bounding_box()))
    wait_for_label(page, "1")
    assert page.locator(MESSAGE).inner_text() == ""
