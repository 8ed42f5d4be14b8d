"""The browser page (space/browser) in headless Chromium: stroke-to-label latency, and uploads read with and
without the page's MNIST-style preparation.

    python bench/bench_browser.py [--model checkpoints/mnist-vit] [--strokes 20] [--uploads 100]

`--model` is a trained mnist-vit folder (exported to a plain ViT here, as push_to_hub.py does) or a plain-ViT
folder; its onnx/ files are made with mnist_vit.onnx_export and served with the built page over loopback HTTP.
Strokes: a "1" and a "0" drawn in turn with the mouse (tests/app_harness.py), timed from pressing the mouse to
the label reading the digit, checked every animation frame; the page reads the canvas while the stroke is under
way. Uploads: MNIST test digits made into pictures people upload (below), read with the preparation ticked
(the page's default) and unticked (the picture as it is, through the stock ViT processor: what the Hub root
alone does with it).
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from transformers import ViTForImageClassification, ViTImageProcessorPil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "bench")]
from app_harness import (  # noqa: E402
    CANVAS, LABEL, chromium_page, clear_canvas, closed_loop, draw, vertical_stroke, wait_for_label,
)
from bench_app import report  # noqa: E402
from test_browser_page import LOCAL_MODEL, build_page, serving, site_with_model, upload  # noqa: E402

from mnist_vit import MnistViTForImageClassification, MnistViTImageProcessor  # noqa: E402
from mnist_vit.data import read_idx  # noqa: E402
from mnist_vit.export import export_to_vit  # noqa: E402
from mnist_vit.onnx_export import stage_onnx  # noqa: E402

MNIST_DIR = Path(os.environ.get("MNIST_DIR", REPO_ROOT.parent / "shared" / "mnist"))
ONNX_CHECK_DIGITS = 1000


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO_ROOT / "checkpoints" / "mnist-vit"))
    parser.add_argument("--strokes", type=int, default=20, help="Digits drawn with the mouse.")
    parser.add_argument("--uploads", type=int, default=100, help="Pictures uploaded of each kind.")
    return parser.parse_args()


def staged_root(model: Path, folder: Path, test_images: np.ndarray) -> Path:
    """`folder` holding the plain-ViT root of `model` (exported unless it is one) and its onnx/ files."""
    if json.loads((model / "config.json").read_text())["model_type"] == "vit":
        vit, vit_processor = ViTForImageClassification.from_pretrained(model), ViTImageProcessorPil.from_pretrained(model)
    else:
        vit, vit_processor = export_to_vit(
            MnistViTForImageClassification.from_pretrained(model).eval(), MnistViTImageProcessor.from_pretrained(model)
        )
    vit.save_pretrained(folder)
    vit_processor.save_pretrained(folder)
    stage_onnx(folder, [Image.fromarray(image) for image in test_images[:ONNX_CHECK_DIGITS]])
    return folder


# In the page: when the last ink was drawn (the pointer event's time) and when the top 3 last changed.
WATCH_TIMES = """() => {
    window.benchTimes = {ink: 0, shown: 0};
    document.querySelector("#canvas canvas").addEventListener("pointermove", (event) => (benchTimes.ink = event.timeStamp));
    new MutationObserver(() => (benchTimes.shown = performance.now()))
        .observe(document.querySelector("#top3"), {childList: true, subtree: true});
}"""


# Nothing left to read (the page's aria-busy), and the top 3 shown for the last ink.
SETTLED = "document.querySelector('#top3').ariaBusy === 'false' && benchTimes.shown > benchTimes.ink"


def stroke_latencies_ms(page, strokes: int) -> dict[str, np.ndarray]:
    """Per stroke: the last ink to the top 3 updated for it, measured in the page, and the mouse released to the
    label reading the digit, measured from outside (Playwright's round trips included)."""
    page.evaluate(WATCH_TIMES)
    box = page.locator(CANVAS).bounding_box()
    timings = {"last ink -> top 3 updated (in the page)": [], "mouse released -> label (from Playwright)": []}
    for index in range(strokes):
        points, digit = (vertical_stroke(box), "1") if index % 2 == 0 else (closed_loop(box), "0")
        clear_canvas(page)
        draw(page, points)
        released = time.perf_counter()
        wait_for_label(page, digit)
        timings["mouse released -> label (from Playwright)"].append((time.perf_counter() - released) * 1000)
        page.wait_for_function(SETTLED, polling="raf")
        timings["last ink -> top 3 updated (in the page)"].append(page.evaluate("benchTimes.shown - benchTimes.ink"))
    return {name: np.array(times) for name, times in timings.items()}


def upload_picture(digit: np.ndarray, dark_ink: bool, rng: np.random.Generator) -> bytes:
    """An MNIST digit as a photographed or scanned page: tinted paper of random size, the digit (its 28x28 tile)
    at 30-90% of the paper's shorter side and anywhere on it, slightly blurred, noisy, saved as JPEG."""
    width, height = rng.integers(160, 400, size=2)
    side = int(rng.uniform(0.3, 0.9) * min(width, height))
    paper_level, ink_level = (rng.uniform(190, 250), rng.uniform(0, 60))
    if not dark_ink:
        paper_level, ink_level = 255 - paper_level, 255 - ink_level
    alpha = np.zeros((height, width), dtype=np.float32)
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    tile = Image.fromarray(digit).resize((side, side), Image.LANCZOS)
    tile = tile.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    alpha[top : top + side, left : left + side] = np.asarray(tile, dtype=np.float32) / 255
    gradient = np.linspace(-15, 15, width)[None, :] * rng.uniform(-1, 1)  # uneven light
    pixels = paper_level * (1 - alpha) + ink_level * alpha + gradient + rng.normal(0, 3, size=alpha.shape)
    buffer = io.BytesIO()
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
    picture.save(buffer, "JPEG", quality=int(rng.integers(60, 90)))
    return buffer.getvalue()


def read_upload(page, path: Path) -> str:
    clear_canvas(page)
    upload(page, path)
    page.locator(LABEL).wait_for(state="attached")
    return page.locator(LABEL).inner_text().strip()


def upload_accuracy(page, pictures: list[tuple[Path, str]], prepare: bool) -> float:
    page.set_checked("#prepare", prepare)
    return float(np.mean([read_upload(page, path) == label for path, label in pictures]))


def main() -> None:
    arguments = parse_arguments()
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "root").mkdir()
        root = staged_root(Path(arguments.model), scratch / "root", images)
        uploads = {}
        for kind, dark_ink in (("dark ink on light paper", True), ("light ink on dark paper", False)):
            uploads[kind] = []
            for index in range(arguments.uploads):
                path = scratch / f"{'dark' if dark_ink else 'light'}-{index}.jpg"
                path.write_bytes(upload_picture(images[index], dark_ink, rng))
                uploads[kind].append((path, str(labels[index])))
        (scratch / "site").mkdir()
        with serving(site_with_model(build_page(), root, scratch / "site")) as url:
            with chromium_page(f"{url}?local_model={LOCAL_MODEL}") as page:
                strokes = stroke_latencies_ms(page, arguments.strokes)
                accuracy = {
                    (kind, prepare): upload_accuracy(page, pictures, prepare)
                    for kind, pictures in uploads.items()
                    for prepare in (True, False)
                }
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work shares them)")
    for name, times in strokes.items():
        report(f"browser: {name}", times)
    for (kind, prepare), share in accuracy.items():
        how = "prepared in the page (MNIST-style)" if prepare else "as it is (stock processor only)"
        print(f"uploads, {kind:<24} {how:<36} {share:7.1%} right   ({arguments.uploads} pictures)")


if __name__ == "__main__":
    main()
