"""app.py as people use it: through gradio_client, and in a real Chromium where digits are drawn with the mouse."""

import base64
import io
import zlib

import numpy as np
import pytest
from app_harness import (
    CANVAS, chromium_page, clear_canvas, closed_loop, draw, running_app, vertical_stroke, wait_for_label,
)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import ink_on_transparency

pytestmark = pytest.mark.slow  # app.py served, driven by gradio_client and a real browser


@pytest.fixture(scope="module")
def app_url(shipped_model, tmp_path_factory):
    """app.py with no flags (so the shipped checkpoint, found from the script's folder), started elsewhere."""
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    with running_app(log_path) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


def test_client_reads_an_uploaded_photo(client, mnist_test_digits, tmp_path):
    images, labels = mnist_test_digits
    path = tmp_path / "scan.png"
    Image.fromarray(255 - images[0]).resize((224, 224)).save(path)  # black on white, like a scan
    confidences, attention_path = client.predict(handle_file(path), api_name="/predict_upload")
    assert confidences["label"] == str(labels[0])
    scores = [entry["confidence"] for entry in confidences["confidences"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert Image.open(attention_path).size == (280, 280)


def test_client_reads_a_canvas_drawing(client, mnist_test_digits):
    """The canvas sends black ink over transparent pixels as a PNG data URL; an empty canvas sends ''."""
    images, labels = mnist_test_digits
    buffer = io.BytesIO()
    ink_on_transparency(np.asarray(Image.fromarray(images[1]).resize((280, 280)))).save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    confidences, _ = client.predict(data_url, api_name="/predict_drawing")
    assert confidences["label"] == str(labels[1])
    assert client.predict("", api_name="/predict_drawing") == ({}, None)


def test_browser_reads_strokes_drawn_with_the_mouse(app_url, tmp_path):
    with chromium_page(app_url) as page:
        canvas_box = page.locator(CANVAS).bounding_box()
        draw(page, vertical_stroke(canvas_box))
        wait_for_label(page, "1")
        page.locator("#attention img").wait_for()
        page.screenshot(path=tmp_path / "one.png")

        clear_canvas(page)
        pixels = "canvas => Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data)"
        assert not any(page.locator(CANVAS).evaluate(pixels)), "Clear left ink on the canvas."

        draw(page, closed_loop(canvas_box))
        wait_for_label(page, "0")
        page.screenshot(path=tmp_path / "zero.png")
    print(f"screenshots: {tmp_path / 'one.png'} {tmp_path / 'zero.png'}")


# --- bad input: a sentence for the user, no traceback in the server's log ----------------------------------


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header says width x height: what a decompression bomb looks like before decoding."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    header = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes(png[24:29])
    png[12:29], png[29:33] = header, zlib.crc32(header).to_bytes(4, "big")
    return bytes(png)


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_undecodable_drawings_and_uploads_get_a_sentence(shipped_model, tmp_path):
    log_path = tmp_path / "app.log"
    (tmp_path / "notes.png").write_text("a shopping list, not a picture")
    buffer = io.BytesIO()
    Image.new("L", (300, 300), 255).save(buffer, format="PNG")
    (tmp_path / "truncated.png").write_bytes(buffer.getvalue()[:300])
    drawings = {
        "data:image/png;base64,@@not base64@@": "not valid base64",
        data_url(b"GIF89a and then nothing"): "This is not a picture that can be read",
        data_url(png_claiming_size(30_000, 30_000)): "The picture is too large to read safely",
    }
    uploads = {"notes.png": "This is not a picture that can be read", "truncated.png": "The picture cannot be decoded"}
    with running_app(log_path) as url:
        client = Client(url, verbose=False)
        for drawing, message in drawings.items():
            with pytest.raises(AppError, match=message):
                client.predict(drawing, api_name="/predict_drawing")
        for name, message in uploads.items():
            with pytest.raises(AppError, match=message):
                client.predict(handle_file(tmp_path / name), api_name="/predict_upload")
        # the server still answers, and read nothing wrong
        assert client.predict("", api_name="/predict_drawing") == ({}, None)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
