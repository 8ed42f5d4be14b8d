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
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from PIL import Image, ImageOps, UnidentifiedImageError
from safetensors import SafetensorError
from transformers import AutoImageProcessor, AutoModelForImageClassification

from .errors import UserError

# The model predict.py and app.py read by default: the repo's checkpoint (a Space carries the same layout).
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "checkpoints" / "mnist-vit"
# The file suffixes of every format Pillow opens: the pictures predict.py reads in a folder, and what makes a
# --data_dir an image folder for train.py (the `imagefolder` loader's own list is drawn from Pillow's too).
IMAGE_SUFFIXES = frozenset(suffix for suffix, format in Image.registered_extensions().items() if format in Image.OPEN)
IMAGE_FORMATS = "PNG, JPEG, WebP, BMP, GIF, TIFF or another format Pillow reads"
# Large pictures are decoded reduced: a JPEG at the smallest scale whose longer side is at least DRAFT_SIDE,
# any picture then to a longer side of at most MAX_SIDE. A digit stays far larger than the 28x28 it becomes.
DRAFT_SIDE = 1024
MAX_SIDE = 2048
NOT_ITS_CONFIG = "The weights in {path} do not fit its config.json: the config describes another model than the weights."
DAMAGED_WEIGHTS = "The weights in {path} are damaged ({error}): copy the model again."  # a truncated or empty file


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
        """Load a local folder or a Hub repo; what is wrong with it raises `UserError`, a sentence that names it."""
        try:
            return cls(*load_model_and_processor(model_name_or_path))
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load the model from {model_name_or_path}: {error}") from None

    def preprocess(self, images: list) -> torch.Tensor:
        return self.image_processor(images, return_tensors="pt")["pixel_values"]

    def predict(self, images: list, top_k: int = 3) -> list[Prediction | None]:
        """One prediction per picture, in order; None for a blank picture (no ink, nothing to classify)."""
        return self.classify(self.preprocess(images), top_k)

    @torch.inference_mode()
    def classify(self, pixel_values: torch.Tensor, top_k: int = 3) -> list[Prediction | None]:
        """`predict` for pictures already preprocessed: (B, C, H, W) from `preprocess`."""
        logits = self.model(pixel_values=pixel_values).logits
        blank = is_blank(pixel_values)
        return [None if blank[i] else self.top_predictions(logits[i], top_k) for i in range(len(logits))]

    @torch.inference_mode()
    def explain(self, image, top_k: int = 3) -> Explanation | None:
        """Predict one picture and show where the model looked; None if the picture is blank.

        Attention maps need eager attention (sdpa returns none): the model switches on the first call."""
        pixel_values = self.preprocess([image])
        if is_blank(pixel_values)[0]:
            return None
        self.model.set_attn_implementation("eager")
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


def check_model_location(model_name_or_path: str | Path) -> None:
    """Refuse, with `ValueError` (a sentence), what cannot hold a model: a file, a path that is neither a folder
    nor a Hub repo id, a folder without config.json."""
    path = Path(model_name_or_path)
    if path.is_file():
        raise ValueError(f"{path} is a file: pass the model's folder (with config.json and model.safetensors).")
    if not path.exists() and not is_repo_id(str(model_name_or_path)):
        raise ValueError(f"There is no folder {path}: pass a model folder, or a Hub repo id such as user/mnist-vit.")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json, so it holds no model: pass the folder train.py wrote the model to.")


def load_model_and_processor(model_name_or_path: str | Path) -> tuple:
    """The model and its image processor; what is wrong raises `OSError` or `ValueError`, a sentence."""
    check_model_location(model_name_or_path)
    path = Path(model_name_or_path)
    if path.is_dir() and not (path / "preprocessor_config.json").is_file():
        raise ValueError(
            f"{path} has no preprocessor_config.json, the image processor that prepares pictures for the model: "
            "copy it with the model (train.py writes it beside the weights)."
        )
    try:
        model, loading = AutoModelForImageClassification.from_pretrained(model_name_or_path, output_loading_info=True)
        image_processor = AutoImageProcessor.from_pretrained(model_name_or_path)
    except OSError as error:
        if path.exists():
            raise
        raise OSError(f"There is no folder {path}, and no such model could be loaded from the Hub: {first_line(error)}") from None
    except ValueError as error:  # a config whose model is no image classifier (e.g. a text model)
        if "Unrecognized configuration class" not in str(error):
            raise
        raise ValueError(f"{path} holds a model that does not classify images: pass an image-classification model.") from None
    except SafetensorError as error:  # a truncated or empty file
        raise ValueError(DAMAGED_WEIGHTS.format(path=path, error=first_line(error))) from None
    except RuntimeError:  # tensors of other shapes than the config says
        raise ValueError(NOT_ITS_CONFIG.format(path=path)) from None
    if loading["missing_keys"] or loading["unexpected_keys"]:
        raise ValueError(NOT_ITS_CONFIG.format(path=path))
    return model, image_processor


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


class ImageReadError(UserError):
    """A file that cannot be read as a picture; the message is a sentence for the user."""


def find_images(arguments: list[str]) -> list[Path]:
    """Files, folders (their image files, recursively, sorted) and glob patterns -> paths, in the given order.

    A folder without images or a pattern that matches nothing is kept as it is, so that reading it reports why.
    """
    paths = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            paths += files_under(path) or [path]
        elif not path.exists() and is_pattern(argument):
            paths += sorted(Path(match) for match in glob.glob(argument, recursive=True)) or [path]
        else:
            paths.append(path)
    return paths


def files_under(folder: Path) -> list[Path]:
    """The image files under `folder`, recursively, sorted; with any folder that cannot be listed, so that
    reading it reports why."""
    found = []
    for root, _, names in os.walk(folder, onerror=lambda error: found.append(Path(error.filename))):
        found += [Path(root, name) for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def is_pattern(argument: str) -> bool:
    return any(character in argument for character in "*?[")


def read_image(path: Path) -> Image.Image:
    """A picture file, decoded by `decode_image`; what is wrong raises `ImageReadError`."""
    if path.is_dir():
        try:
            os.listdir(path)
        except OSError as error:
            raise ImageReadError(f"This folder cannot be read: {error.strerror}.") from None
        raise ImageReadError(f"This folder holds no pictures ({IMAGE_FORMATS}).")
    if not path.exists():
        raise ImageReadError("No file matches this pattern." if is_pattern(str(path)) else "No such file.")
    if path.stat().st_size == 0:
        raise ImageReadError("The file is empty.")
    return decode_image(path)


def decode_image(file: Path | BinaryIO) -> Image.Image:
    """Decode a picture fully (its first frame for an animated GIF), upright as its EXIF says, and reduced if
    large, so that memory stays small whatever the picture's size: a digit needs far fewer pixels than a photo.

    Whatever Pillow raises for a damaged file becomes `ImageReadError`, a sentence for the user.
    """
    try:
        # Pillow warns of pictures over 89 megapixels (and refuses twice that): they are read here, then reduced
        with warnings.catch_warnings(action="ignore", category=Image.DecompressionBombWarning), Image.open(file) as image:
            longer = max(image.size)
            if longer > DRAFT_SIDE:  # JPEG decodes at 1/2, 1/4 or 1/8 scale; other formats ignore this
                scale = DRAFT_SIDE / longer
                image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image.load()  # decode now, so that a damaged file fails here and not in the middle of a batch
            image.thumbnail((MAX_SIDE, MAX_SIDE))  # in place, and only ever shrinks
            return ImageOps.exif_transpose(image)  # phone photos are stored sideways with an EXIF rotation
    except UnidentifiedImageError:
        raise ImageReadError(f"This is not a picture that can be read ({IMAGE_FORMATS} expected).") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"The picture is too large to read safely: {error}") from None
    except Exception as error:  # noqa: BLE001  Pillow's decoders raise many types for damaged files
        raise ImageReadError(f"The picture cannot be decoded ({type(error).__name__}: {error}).") from None


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def is_repo_id(argument: str) -> bool:
    try:
        validate_repo_id(argument)
    except HFValidationError:
        return False
    return True


__all__ = [
    "SHIPPED_MODEL",
    "DigitClassifier",
    "Explanation",
    "ImageReadError",
    "Prediction",
    "attention_picture",
    "attention_rollout",
    "decode_image",
    "find_images",
    "read_image",
]
