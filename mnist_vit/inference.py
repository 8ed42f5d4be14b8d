"""Using a trained model: pictures of digits in, labels and probabilities out, and where the model looked.

`predict.py` and `app.py` are thin wrappers around this module:

    classifier = DigitClassifier.from_pretrained("checkpoints/mnist-vit")
    classifier.predict([read_image(path) for path in find_images(["photos/"])], top_k=3)
    classifier.explain(drawing)  # prediction + the 28x28 digit the model saw + attention over its patches

Every picture goes through the model's own image processor, so a photo, a canvas drawing with a
transparent background or a typed digit becomes the same MNIST-style 28x28 the model was trained on.
"""

import glob
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import AutoImageProcessor, AutoModelForImageClassification

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
IMAGE_FORMATS = "PNG, JPEG, WebP, BMP or GIF"


@dataclass
class Prediction:
    top_k: list[dict]  # [{"label": "7", "score": 0.998}, ...], best first, as transformers' pipelines

    @property
    def label(self) -> str:
        return self.top_k[0]["label"]

    @property
    def score(self) -> float:
        return self.top_k[0]["score"]


@dataclass
class Explanation:
    prediction: Prediction
    digit: np.ndarray  # (H, W) float in [0, 1]: the picture as the model sees it, white ink on black
    attention: np.ndarray  # (grid, grid), sums to 1: how much the CLS token draws from each patch


class DigitClassifier:
    """A trained model with its image processor."""

    def __init__(self, model, image_processor):
        self.model = model.eval()
        self.image_processor = image_processor

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | Path) -> "DigitClassifier":
        """Load a local folder or a Hub repo. Eager attention, because only eager returns attention maps."""
        model = AutoModelForImageClassification.from_pretrained(model_name_or_path, attn_implementation="eager")
        return cls(model, AutoImageProcessor.from_pretrained(model_name_or_path))

    def preprocess(self, images: list) -> torch.Tensor:
        return self.image_processor(images, return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def predict(self, images: list, top_k: int = 3) -> list[Prediction | None]:
        """One prediction per picture, in order; None for a blank picture (no ink, nothing to classify)."""
        pixel_values = self.preprocess(images)
        logits = self.model(pixel_values=pixel_values).logits
        blank = is_blank(pixel_values)
        return [None if blank[i] else self.top_predictions(logits[i], top_k) for i in range(len(logits))]

    @torch.inference_mode()
    def explain(self, image, top_k: int = 3) -> Explanation | None:
        """Predict one picture and show where the model looked; None if the picture is blank."""
        pixel_values = self.preprocess([image])
        if is_blank(pixel_values)[0]:
            return None
        outputs = self.model(pixel_values=pixel_values, output_attentions=True)
        return Explanation(
            prediction=self.top_predictions(outputs.logits[0], top_k),
            digit=self.unnormalize(pixel_values[0, 0]),
            attention=attention_rollout(outputs.attentions)[0],
        )

    def top_predictions(self, logits: torch.Tensor, top_k: int) -> Prediction:
        scores, indices = logits.softmax(-1).topk(min(top_k, logits.numel()))
        labels = [self.model.config.id2label[index] for index in indices.tolist()]
        top = [{"label": label, "score": score} for label, score in zip(labels, scores.tolist())]
        return Prediction(top_k=top)

    def unnormalize(self, channel: torch.Tensor) -> np.ndarray:
        processor = self.image_processor
        mean, std = np.ravel(processor.image_mean)[0], np.ravel(processor.image_std)[0]
        return np.clip(channel.numpy() * std + mean, 0, 1)


def is_blank(pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,) bool: the processor maps a picture without ink to one flat background value."""
    flat = pixel_values.flatten(1)
    return flat.amax(dim=1) == flat.amin(dim=1)


def attention_rollout(attentions: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): how much the CLS token's final state draws from each patch.

    One layer's attention misses the residual path and what earlier layers already mixed, so each layer's
    head-averaged attention gets the identity added (the residual), rows renormalised, and the layers are
    multiplied through. Returns (B, grid, grid) with each map summing to 1.
    """
    batch, _, tokens, _ = attentions[0].shape  # (B, heads, T, T), T = 1 + patches
    identity = torch.eye(tokens)
    rollout = identity.expand(batch, tokens, tokens)
    for attention in attentions:
        mixing = attention.float().mean(dim=1) + identity
        rollout = (mixing / mixing.sum(dim=-1, keepdim=True)) @ rollout
    cls_to_patches = rollout[:, 0, 1:]
    cls_to_patches = cls_to_patches / cls_to_patches.sum(dim=-1, keepdim=True)
    grid = math.isqrt(tokens - 1)
    return cls_to_patches.reshape(batch, grid, grid).numpy()


def attention_picture(explanation: Explanation, size: int = 280) -> Image.Image:
    """The digit as the model sees it, with its patches tinted orange by attention (strongest = most opaque)."""
    attention = explanation.attention
    spread = attention.max() - attention.min()
    weight = (attention - attention.min()) / spread if spread > 0 else np.zeros_like(attention)
    # nearest-neighbour upscaling keeps each patch a visible square
    weight = np.asarray(Image.fromarray(weight.astype(np.float32)).resize((size, size), Image.Resampling.NEAREST))
    digit = Image.fromarray(explanation.digit.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
    digit = np.asarray(digit)
    opacity = 0.7 * weight[..., None]
    orange = np.array([1.0, 0.55, 0.0])
    rgb = digit[..., None] * (1 - opacity) + orange * opacity
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


# --- reading pictures from disk --------------------------------------------------------------------------


class ImageReadError(Exception):
    """A file that cannot be read as a picture; the message is a sentence for the user."""


def find_images(arguments: list[str]) -> list[Path]:
    """Files, folders (their image files, recursively, sorted) and glob patterns -> paths, in the given order.

    A folder without images or a pattern that matches nothing is kept as it is, so that reading it reports why.
    """
    paths = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = [file for file in path.rglob("*") if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file()]
            paths += sorted(found) or [path]
        elif not path.exists() and is_pattern(argument):
            paths += sorted(Path(match) for match in glob.glob(argument, recursive=True)) or [path]
        else:
            paths.append(path)
    return paths


def is_pattern(argument: str) -> bool:
    return any(character in argument for character in "*?[")


def read_image(path: Path) -> Image.Image:
    """Decode a picture file fully (its first frame for an animated GIF), upright as its EXIF says."""
    if path.is_dir():
        raise ImageReadError(f"This folder holds no {IMAGE_FORMATS} files.")
    if not path.exists():
        raise ImageReadError("No file matches this pattern." if is_pattern(str(path)) else "No such file.")
    if path.stat().st_size == 0:
        raise ImageReadError("The file is empty.")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so that a truncated file fails here and not in the middle of a batch
            return ImageOps.exif_transpose(image)  # phone photos are stored sideways with an EXIF rotation
    except UnidentifiedImageError:
        raise ImageReadError(f"This is not a picture that can be read ({IMAGE_FORMATS} expected).") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"The picture cannot be decoded: {error}.") from None


__all__ = [
    "DigitClassifier",
    "Explanation",
    "ImageReadError",
    "Prediction",
    "attention_picture",
    "attention_rollout",
    "find_images",
    "read_image",
]
