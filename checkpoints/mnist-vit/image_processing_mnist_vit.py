"""Image processor of the MNIST Vision Transformer: any picture of one digit -> an MNIST-style 28x28.

MNIST was made this way (LeCun et al.): each NIST digit, white ink on black, was scaled so that its
longer side fits a 20x20 box (keeping the aspect ratio, with anti-aliasing), then placed in a 28x28
field so that its centre of mass lies at the centre. `MnistViTImageProcessor` repeats those steps
for uploads, photos and canvas drawings, so the model sees what it was trained on:

    grayscale -> ink white on black -> crop to the ink -> scale to `digit_size` -> centre of mass
    at the centre of `size` -> rescale to [0, 1] -> normalise

An MNIST digit comes back as it was: its ink box is already 20 pixels long and its centre of mass
within half a pixel of (14, 14). Of the 10,000 MNIST test digits, all but 8 correlate above 0.999
with their input (those 8 correlate above 0.68).

This file is copied into Hub repos as remote code: it imports only transformers, numpy, PIL and torch.
"""

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs

# ITU-R 601-2 luma, the weights PIL uses for convert("L")
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class MnistViTImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    do_invert (`bool`, defaults to `True`):
        Make the ink white on black: a picture whose ink is darker than its background (judged from the
        picture's border) is inverted, the background and its noise become 0 and the strongest ink 255.
    do_crop (`bool`, defaults to `True`):
        Crop the picture to the bounding box of its ink.
    digit_size (`int`, defaults to 20):
        Length in pixels of the longer side of the digit after `do_resize` (MNIST uses 20).
    do_center (`bool`, defaults to `True`):
        Place the digit so that its centre of mass is at the centre of the output; otherwise its box is centred.
    num_channels (`int`, defaults to 1):
        Channels of `pixel_values`; 3 repeats the grayscale channel for a 3-channel model.
    """

    do_invert: bool
    do_crop: bool
    digit_size: int
    do_center: bool
    num_channels: int


class MnistViTImageProcessor(PilBackend):
    r"""
    Turns pictures of single digits into MNIST-style `pixel_values` of shape (batch, num_channels, 28, 28).

    Takes PIL images in any mode (transparent pixels count as background), numpy arrays and torch tensors of
    shape (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4 (uint8, uint16, or float in [0, 1]), and lists
    of them or 4-D batches. A 3-D array is one image: pass several as a list. Everything becomes grayscale.
    `size` is the output size; `resample` the filter used by `do_resize`. `do_resize`, `do_rescale`,
    `rescale_factor`, `do_normalize`, `image_mean` and `image_std` work as in every transformers image processor.
    """

    valid_kwargs = MnistViTImageProcessorKwargs
    model_input_names = ["pixel_values"]

    do_invert = True
    do_crop = True
    do_resize = True
    digit_size = 20
    size = {"height": 28, "width": 28}
    resample = PILImageResampling.LANCZOS
    do_center = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [0.1307]
    image_std = [0.3081]
    num_channels = 1

    def _prepare_images_structure(self, images, expected_ndims=3):
        """A flat list of single images. Unlike transformers' default, strings are not fetched as URLs."""
        return flatten_images(images)

    def process_image(self, image, **kwargs) -> np.ndarray:
        """One picture -> (H, W) float32 grayscale in [0, 255]."""
        return to_grayscale(image)

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_invert: bool,
        do_crop: bool,
        do_resize: bool,
        digit_size: int,
        size,
        resample,
        do_center: bool,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        num_channels: int,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        digits = []
        for ink in images:
            if do_invert:
                ink = make_ink_white_on_black(ink)
            if do_crop:
                ink = crop_to_ink(ink)
            if do_resize:
                ink = resize_longer_side(ink, digit_size, resample)
            digits.append(place_on_canvas(ink, size.height, size.width, by_center_of_mass=do_center))
        pixel_values = np.stack(digits)[:, None].repeat(num_channels, axis=1)  # (B, C, H, W)
        if do_rescale:
            pixel_values = pixel_values * np.float32(rescale_factor)
        if do_normalize:
            mean, std = per_channel(image_mean, num_channels), per_channel(image_std, num_channels)
            pixel_values = (pixel_values - mean) / std
        return BatchFeature(data={"pixel_values": pixel_values.astype(np.float32)}, tensor_type=return_tensors)


# --- input: anything that can hold a picture -> flat list of (H, W) grayscale arrays -----------------


def flatten_images(images) -> list:
    """Flatten nested lists and 4-D batches into a list of single images, refusing anything else."""
    if isinstance(images, (list, tuple)):
        flat = [image for item in images for image in flatten_images(item)]
        if not flat:
            raise ValueError("Got an empty list of images; expected at least one image.")
        return flat
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        return [images]
    raise ValueError(
        f"Expected a PIL image, a numpy array or a torch tensor (or a list of them), got {type(images).__name__}."
    )


def to_grayscale(image) -> np.ndarray:
    """A PIL image, numpy array or torch tensor -> (H, W) float32 in [0, 255], transparent pixels as background."""
    if isinstance(image, Image.Image):
        image = pil_to_array(image)
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image.float() if image.is_floating_point() else image).numpy()
    pixels = to_0_255(np.asarray(image))
    channels = channels_last(pixels)
    gray = channels[..., :3] @ LUMA_WEIGHTS if channels.shape[-1] >= 3 else channels[..., 0]
    if channels.shape[-1] == 4:
        gray = fill_transparency(gray, alpha=channels[..., 3] / 255)
    return gray.astype(np.float32)


def pil_to_array(image: Image.Image) -> np.ndarray:
    """PIL modes -> arrays: 16-bit stays 16-bit, transparency becomes an alpha channel, the rest 8-bit gray."""
    if image.mode.startswith("I;16"):
        return np.asarray(image)
    if image.has_transparency_data:
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("L"))


def to_0_255(pixels: np.ndarray) -> np.ndarray:
    """Check an array holds a picture and bring its values to float32 in [0, 255]."""
    if pixels.ndim not in (2, 3):
        raise ValueError(f"Expected an image of shape (H, W), (H, W, C) or (C, H, W), got shape {pixels.shape}.")
    if pixels.size == 0:
        raise ValueError(f"Got an empty image of shape {pixels.shape}; expected at least one pixel.")
    if pixels.dtype == bool:
        return pixels.astype(np.float32) * 255
    if pixels.dtype.kind == "u" and pixels.dtype.itemsize == 2:  # 16-bit, e.g. PIL mode I;16
        return pixels.astype(np.float32) / 257
    if pixels.dtype.kind in "iu":
        if pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(
                f"Integer images must hold values in [0, 255], got values in [{pixels.min()}, {pixels.max()}]."
            )
        return pixels.astype(np.float32)
    if pixels.dtype.kind == "f":
        if not np.isfinite(pixels).all():
            raise ValueError("The image contains NaN or infinite values; expected finite pixel values.")
        if pixels.min() < 0 or pixels.max() > 1:
            raise ValueError(
                f"Float images must hold values in [0, 1], got values in [{pixels.min()}, {pixels.max()}]; "
                "pass uint8 for values in [0, 255]."
            )
        return pixels.astype(np.float32) * 255
    raise ValueError(f"Expected pixels of a numeric type, got dtype {pixels.dtype}.")


def channels_last(pixels: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, C) or (C, H, W) -> (H, W, C), with C in 1, 3, 4."""
    if pixels.ndim == 2:
        return pixels[..., None]
    if pixels.shape[-1] in (1, 3, 4):
        return pixels
    if pixels.shape[0] in (1, 3, 4):
        return np.moveaxis(pixels, 0, -1)
    raise ValueError(
        f"Cannot find the channels of an image of shape {pixels.shape}; expected 1, 3 or 4 channels, "
        "first or last. Pass a batch as a list of images."
    )


def fill_transparency(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Show transparent pixels as background: white behind dark ink, black behind light ink."""
    opaque_gray = (gray * alpha).sum() / max(alpha.sum(), 1e-6)
    background = 255.0 if opaque_gray < 127.5 else 0.0
    return gray * alpha + background * (1 - alpha)


# --- the MNIST steps on one (H, W) float32 picture ------------------------------------------------------


def make_ink_white_on_black(gray: np.ndarray) -> np.ndarray:
    """Ink = how far a pixel strays from the background, on the side the picture strays furthest to.

    The border tells the background level and its noise; ink must stand out from that noise by 5 sigma
    (among a million background pixels hardly one strays that far), and the strongest ink becomes 255.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = np.median(border)
    noise = 5 * 1.4826 * np.median(np.abs(border - background))  # 1.4826 * MAD = sigma, robust to ink on the border
    dark_ink = background - gray.min() > gray.max() - background
    ink = (background - gray if dark_ink else gray - background) - noise
    ink_max = ink.max()
    if ink_max <= 0:  # blank picture
        return np.zeros_like(gray)
    # MNIST ink peaks at 255: bring faint pencil or photographed ink to full strength
    return np.clip(ink, 0, None) * (255 / ink_max)


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """Crop to the box of the ink stronger than 5% of the strongest.

    The 5% ignores the faint halos that JPEG and sharpening leave around strokes, which would widen the box
    and shrink the digit; MNIST's own faintest edges are almost always within the box of the rest.
    """
    strong = ink > 0.05 * ink.max()
    rows, cols = np.nonzero(strong.any(axis=1))[0], np.nonzero(strong.any(axis=0))[0]
    if rows.size == 0:  # blank: nothing to crop to
        return ink
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def resize_longer_side(ink: np.ndarray, length: int, resample) -> np.ndarray:
    height, width = ink.shape
    scale = length / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL wants (width, height)
    resized = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(new_size, resample=resample))  # mode F
    return np.clip(resized, 0, 255)  # LANCZOS rings slightly outside the input range


def place_on_canvas(ink: np.ndarray, height: int, width: int, by_center_of_mass: bool) -> np.ndarray:
    """Paste `ink` into a black (height, width) canvas with a whole-pixel shift; what falls outside is cut off.

    The centre of mass goes to pixel (height // 2, width // 2): MNIST's centres of mass lie within half a
    pixel of (14, 14), so rounding keeps MNIST digits exactly where they are. Otherwise the box is centred.
    """
    canvas = np.zeros((height, width), dtype=np.float32)
    total = ink.sum()
    if total == 0:
        return canvas
    if by_center_of_mass:
        center_y = ink.sum(axis=1) @ np.arange(ink.shape[0]) / total
        center_x = ink.sum(axis=0) @ np.arange(ink.shape[1]) / total
        top, left = round(height // 2 - center_y), round(width // 2 - center_x)
    else:
        top, left = (height - ink.shape[0]) // 2, (width - ink.shape[1]) // 2
    # the part of the shifted ink that lies on the canvas
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ink.shape[0], height), min(left + ink.shape[1], width)
    if y0 < y1 and x0 < x1:
        canvas[y0:y1, x0:x1] = ink[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def per_channel(values, num_channels: int) -> np.ndarray:
    """Mean or std as a (C, 1, 1) array; one value serves all channels."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size not in (1, num_channels):
        raise ValueError(f"Expected 1 or {num_channels} values for image_mean and image_std, got {values.size}.")
    return np.broadcast_to(values, (num_channels,))[:, None, None]


__all__ = ["MnistViTImageProcessor"]
