"""The drawing demo: draw a digit (mouse, finger or pen) or upload a photo; see the top 3 and where the model looks.

    python app.py                          # the shipped checkpoint, http://127.0.0.1:7860
    python app.py --model user/mnist-vit --port 7861 --share

The same file runs as a Hugging Face Space (see the README). Both inputs go through the model's own image
processor. API endpoints: `/predict_drawing` takes a PNG data URL (what the canvas sends), `/predict_upload` an
image file; both return the top-3 confidences and the attention picture.
"""

import argparse
import base64
import binascii
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

from mnist_vit.errors import UserError, exit_status
from mnist_vit.inference import SHIPPED_MODEL, DigitClassifier, attention_picture, decode_image, read_image

TOP_K = 3
# Pictures above twice this many pixels are refused as decompression bombs (PIL's own check), so that one request
# cannot take gigabytes: a 64-megapixel PNG decodes to 256 MB, and JPEGs decode reduced (inference.decode_image).
MAX_IMAGE_PIXELS = 32_000_000
CANVAS_SIZE = 280  # 10 canvas pixels per MNIST pixel
BRUSH_SIZE = 22  # MNIST strokes are 2-3 pixels wide in a 20-pixel digit: a thin pen reads worse

# gr.Sketchpad (gradio 6.31) drops the change event of the first stroke when it starts with a white sheet,
# and without one it needs a click on its brush tool first, so a one-stroke "1" would never be read. This
# plain canvas draws ink on transparent pixels (the processor's background) and sends a PNG data URL while
# drawing, at most every SEND_INTERVAL_MS, and when the stroke ends; its Clear button sends ''. Setting
# `props.value` fires `change`, so clearing reaches the server in order with the strokes around it.
CANVAS_HTML = """
<canvas class="digit-canvas" width="${size}" height="${size}"></canvas>
<button class="clear-button" type="button">Clear</button>
"""
CANVAS_CSS = """
.digit-canvas { display: block; width: ${size}px; max-width: 100%; aspect-ratio: 1; background: white;
                border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); cursor: crosshair;
                touch-action: none; /* a finger draws instead of scrolling the page */ }
.clear-button { margin-top: var(--spacing-lg); padding: var(--button-large-padding); width: ${size}px; max-width: 100%;
                border: 1px solid var(--button-secondary-border-color); border-radius: var(--button-large-radius);
                background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color);
                font-weight: var(--button-large-text-weight); }
"""
CANVAS_JS = """
const SEND_INTERVAL_MS = 100;
const canvas = element.querySelector('canvas');
const pen = canvas.getContext('2d');
let last = null, pending = null;

function point(event) {
  const box = canvas.getBoundingClientRect();  // the canvas may be shown smaller than its pixels
  const scale = canvas.width / box.width;
  return [(event.clientX - box.left) * scale, (event.clientY - box.top) * scale];
}
function drawTo(next) {
  Object.assign(pen, {lineWidth: props.brush_size, lineCap: 'round', lineJoin: 'round', strokeStyle: 'black'});
  pen.beginPath(); pen.moveTo(...last); pen.lineTo(...next); pen.stroke();
  last = next;
}
function send(value) {
  clearTimeout(pending); pending = null;
  props.value = value;
}
function endStroke() {
  if (last === null) return;
  last = null; send(canvas.toDataURL('image/png'));
}
canvas.addEventListener('pointerdown', (event) => {
  canvas.setPointerCapture(event.pointerId);
  last = point(event); drawTo(last);  // a tap leaves a dot
});
canvas.addEventListener('pointermove', (event) => {
  if (last === null) return;
  drawTo(point(event));
  pending = pending || setTimeout(() => send(canvas.toDataURL('image/png')), SEND_INTERVAL_MS);
});
canvas.addEventListener('pointerup', endStroke);
canvas.addEventListener('pointercancel', endStroke);
element.querySelector('.clear-button').addEventListener('click', () => {
  pen.clearRect(0, 0, canvas.width, canvas.height);
  send('');
});
"""


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A drawing demo of the MNIST Vision Transformer.")
    parser.add_argument("--model", default=str(SHIPPED_MODEL), help="Model folder or Hub repo (default: %(default)s).")
    parser.add_argument("--port", type=int, default=None, help="Port to serve on (default: 7860 or the next free one).")
    parser.add_argument("--share", action="store_true", help="Also serve through a temporary public gradio.live link.")
    return parser.parse_args()


@contextmanager
def shown_to_user() -> Iterator[None]:
    """A `UserError` (a mistake in the input) is shown in the page as it is, with no traceback in the server's log."""
    try:
        yield
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from None


def decode_data_url(data_url: str | None) -> Image.Image | None:
    """`data:image/png;base64,...` -> the picture; an empty canvas sends ''."""
    if not data_url:
        return None
    header, _, encoded = data_url.partition(",")
    if not (header.startswith("data:image/") and header.endswith(";base64")):
        raise UserError("Expected the drawing as a base64 data URL: data:image/png;base64,...")
    try:
        picture = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise UserError("The drawing's data URL is not valid base64: send the canvas's toDataURL() as it is.") from None
    return decode_image(io.BytesIO(picture))


def read_upload(upload: dict | None) -> Image.Image | None:
    """The uploaded file (gradio's file data, unprocessed: gradio's own decoding would fail with its generic
    error) -> the picture."""
    return None if upload is None else read_image(Path(upload["path"]))


def classify(classifier: DigitClassifier, image: Image.Image | None) -> tuple[dict | None, Image.Image | None]:
    """Top-k confidences for `gr.Label` and the attention picture; nothing for no picture or a blank one."""
    explanation = classifier.explain(image, top_k=TOP_K) if image is not None else None
    if explanation is None:
        return None, None
    confidences = {entry["label"]: entry["score"] for entry in explanation.prediction.top_k}
    return confidences, attention_picture(explanation)


def build_demo(classifier: DigitClassifier) -> gr.Blocks:
    def predict_drawing(data_url: str | None):
        with shown_to_user():
            return classify(classifier, decode_data_url(data_url))

    def predict_upload(upload: dict | None):
        with shown_to_user():
            return classify(classifier, read_upload(upload))

    with gr.Blocks(title="mnist-vit") as demo:
        gr.Markdown("# mnist-vit\nDraw a digit, or upload a photo of one. The prediction follows your pen.")
        with gr.Row():
            with gr.Column():
                canvas = gr.HTML(
                    value="",
                    label="Draw a digit",
                    show_label=True,
                    container=True,
                    html_template=CANVAS_HTML,
                    css_template=CANVAS_CSS,
                    js_on_load=CANVAS_JS,
                    size=CANVAS_SIZE,
                    brush_size=BRUSH_SIZE,
                    elem_id="canvas",
                )
                upload = gr.Image(
                    label="Or upload a photo",
                    type="filepath",
                    sources=["upload", "clipboard"],
                    elem_id="upload",
                )
            with gr.Column():
                label = gr.Label(num_top_classes=TOP_K, label="Prediction", elem_id="prediction")
                attention = gr.Image(
                    label="Where the model looks (attention rollout)",
                    interactive=False,
                    format="png",  # sharp patch edges
                    elem_id="attention",
                )
        # always_last: while one drawing is being classified only the newest waits, so the label keeps up
        for source, predict in ((canvas, predict_drawing), (upload, predict_upload)):
            source.change(
                predict,
                inputs=source,
                outputs=[label, attention],
                api_name=predict.__name__,
                trigger_mode="always_last",
                show_progress="hidden",
                preprocess=False,  # the functions decode pictures themselves, each failure a sentence for the user
            )
    return demo


def main() -> None:
    arguments = parse_arguments()
    torch.set_num_threads(1)  # one drawing at a time: more threads only wait on each other (bench/bench_predict.py)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    demo = build_demo(DigitClassifier.from_pretrained(arguments.model))
    demo.launch(server_port=arguments.port, share=arguments.share)


if __name__ == "__main__":
    sys.exit(exit_status(main))
