"""Widget examples for the Hub page: pictures that both variants read alike, with the root model's top scores.

One test digit per class; with a root model trained for uploads, also a drawing and a phone photo. Each example
carries the plain ViT's top classes, which the card's `widget:` shows as static `output:` and the staged folder's
check (check_hub_folder.py) holds every variant to.
"""

import io
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import ViTForImageClassification, ViTImageProcessorPil

from . import photos
from .errors import UserError
from .run_folder import TrainedRun

# Test digits searched for widget examples: enough to find a confidently classified one of each class.
WIDGET_CANDIDATES = 1000
# Test digits made into a drawing and a photo, for the widget examples of uploads.
UPLOAD_CANDIDATES = 12
PHOTO_SIDE = (800, 1200)  # pixels on the long side: a phone photo, kept small for the repo
WIDGET_TOP_K = 3


@dataclass
class WidgetExample:
    file: str  # its name in examples/
    title: str
    content: bytes  # the picture file
    outputs: list[dict]  # the plain ViT's top classes, {"label", "score"}: what the widget shows


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def top_outputs(probabilities: np.ndarray, id2label: dict) -> list[dict]:
    top = np.argsort(-probabilities)[:WIDGET_TOP_K]
    return [{"label": id2label[int(i)], "score": round(float(probabilities[i]), 4)} for i in top]


@dataclass
class Readings:
    """What both variants make of some pictures: the root's class probabilities and its lead over the runner-up,
    whether the remote-code model (through its own processor) gives the root's label, and whether that is right."""

    probabilities: np.ndarray
    lead: np.ndarray
    agree: np.ndarray
    right: np.ndarray


def read_by_both(
    vit: ViTForImageClassification, vit_processor: ViTImageProcessorPil, run: TrainedRun, pictures: list,
    labels: np.ndarray,
) -> Readings:
    with torch.no_grad():
        root = vit(**vit_processor(pictures, return_tensors="pt")).logits.softmax(-1).numpy()
        remote = run.model(**run.image_processor(pictures, return_tensors="pt")).logits.argmax(-1).numpy()
    ranked = np.sort(root, axis=1)
    agree = root.argmax(1) == remote
    return Readings(root, ranked[:, -1] - ranked[:, -2], agree, agree & (remote == labels))


def pick_widget_examples(
    vit: ViTForImageClassification, vit_processor: ViTImageProcessorPil, run: TrainedRun,
    test_split: datasets.Dataset,
) -> list[WidgetExample]:
    """One test digit per class: one that both variants read right if any (else one they read alike), with the
    root's widest lead over the runner-up (a wide lead keeps the label under both preprocessings: the remote-code
    processor moves a few MNIST digits by a pixel when it centres their mass)."""
    candidates = test_split.select(range(min(WIDGET_CANDIDATES, len(test_split))))
    images, labels = list(candidates["image"]), np.asarray(list(candidates["label"]))
    read = read_by_both(vit, vit_processor, run, images, labels)
    examples = []
    for class_id, label in vit.config.id2label.items():
        members = np.flatnonzero(labels == class_id)
        if members.size == 0:
            raise UserError(f"The first {len(candidates)} test digits hold no {label!r}, so no widget example for it.")
        best = max(members, key=lambda index: (read.right[index], read.agree[index], read.lead[index]))
        outputs = top_outputs(read.probabilities[best], vit.config.id2label)
        examples.append(WidgetExample(f"{label}.png", f"Digit {label}", png_bytes(images[best]), outputs))
    return examples


def pick_upload_examples(
    vit: ViTForImageClassification, vit_processor: ViTImageProcessorPil, run: TrainedRun, test_split: datasets.Dataset
) -> list[WidgetExample]:
    """A black-on-white drawing and a phone photo of test digits, each the one that both the root and the
    remote-code model read right with the root's widest lead; left out when no candidate is read right by both."""
    rng = np.random.default_rng(0)
    candidates = test_split.select(range(min(UPLOAD_CANDIDATES, len(test_split))))
    digits, labels = [np.asarray(image) for image in candidates["image"]], np.asarray(list(candidates["label"]))
    made = {
        "drawing.png": [png_bytes(photos.drawing(digit, rng)) for digit in digits],
        "photo.jpg": [photos.phone_photo(digit, "plain", rng, long_side=PHOTO_SIDE) for digit in digits],
    }
    titles = {"drawing.png": "A drawing, black on white", "photo.jpg": "A phone photo"}
    examples = []
    for file, contents in made.items():
        pictures = [ImageOps.exif_transpose(Image.open(io.BytesIO(content))).convert("RGB") for content in contents]
        read = read_by_both(vit, vit_processor, run, pictures, labels)
        if read.right.any():
            best = max(np.flatnonzero(read.right), key=lambda index: read.lead[index])
            outputs = top_outputs(read.probabilities[best], vit.config.id2label)
            examples.append(WidgetExample(file, titles[file], contents[best], outputs))
    return examples
