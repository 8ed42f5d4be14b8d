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

# Longer side of the copy on which the digit is found: a digit of 20% of the picture keeps 77 pixels
WORKING_SIZE = 384
# A picture this small (MNIST's 28x28, an icon) is all digit: nothing in it is desk, ruling or speck
THUMBNAIL_SIZE = 64
# A picture cropped tight to its digit is looked at with a margin of paper this wide (a fraction of its longer side)
TIGHT_CROP_MARGIN = 0.15
# ... if its strokes cover at most this share of the border (desk around a page covers more)
TIGHT_CROP_BORDER = 0.25
# ... and the digit found there is taken if at least this share of it was strokes at the first look: on a blank
# sheet, the margin turns ruling, grid squares or a shadow band into sunk patches of "ink" that the first look
# never saw (under 0.2 for 17 of the 20 pictures of an independent set where the margin found a digit, all 17
# blank sheets); a digit cropped tight is mostly strokes at both looks (over 0.6 for 9 in 10)
TIGHT_CROP_STROKES = 0.2
# Noise over this share of the strongest ink (a dim photo) is averaged out before strokes are told from it
NOISY = 0.4
# Ink this many times the ink of the lines that run its way (their cores: the 75th percentile, as a blurred line's
# paler edges are half its pixels), where such a line runs, is a stroke crossing it or running along it; a margin
# line, darker than the ruling, is the only line across it
LINE_INK = 2
# Ink fainter than this share of the lightest paper is the paper's texture or noise, not a stroke: on blank sheets
# the strongest reaches 0.03-0.07 (a bright sticky note's noise too), a faint pencil's strokes 0.09-0.13 (medians)
FAINTEST = 0.08
# The narrowest window that measures the paper around ink: wider than the thickest strokes of a 28x28 digit
MIN_WINDOW = 9
# Paper this even (the share of the ink's contrast between the typical and the lightest pixel) is plain: a canvas,
# a scan, MNIST. Phone photos measure 0.03-0.2 (noise, light), drawings and typed digits 0.
PLAIN = 0.01
# The narrow paper sunk this far below the wide paper (a share of the ink's contrast) is a shadow or a bold stroke
SUNK = 0.25
# A piece of a photo's ink that touches the border and reaches no further into the picture than this (a share of
# its longer side) is a sliver of desk or shadow: where a shadow's or a sticky note's edge meets the border at an
# acute angle, the paper's closing fills the corner in
SLIVER_DEPTH = 0.1
# A mark holding a solid square this long (a share of its longer side) is a patch, not strokes: a digit's strokes
# hold at most 0.45 (MNIST's boldest, enlarged; felt-pen drawings), a piece of desk beside a sticky note 0.8
SOLID = 0.6
# Stroke width, a share of the digit's longer side (twice the strokes' area over their outline): a tenth of MNIST's
# digits are under THIN, its median is 0.114 (test digits uploaded at 112-448 px); a ballpoint's line on a photo's
# digit 0.02-0.04. Strokes under THIN are widened to STROKE.
THIN = 0.09
STROKE = 0.12
# A mark with over this share of the paper just around it as dark as itself is a shadow's tip, not ink: a fifth or
# more for 8 blank sheets of independent sets, at most 0.11 for their digits (in and out of shadows)
DARK_SURROUNDINGS = 0.2
# A photo's piece lying along its border for more than this share of the longer side is desk, a shadow or the
# page's edge, not a digit (on plain paper, which has none of them, a quarter)
ALONG_BORDER = 0.06
# ITU-R 601-2 luma, the weights PIL uses for convert("L")
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class MnistViTImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    do_find_digit (`bool`, defaults to `True`):
        Find the digit's ink, white on black: flatten the light (gradients, shadows), take dark ink on light
        paper or light ink on a dark ground, drop ruling lines, specks and what touches the border, keep the
        main, most central mark; its background becomes 0 and its strongest ink 255, and strokes thinner than
        MNIST's (a ballpoint's line) are widened to MNIST's share of the digit. Large pictures are first shrunk
        so that their longer side is at most 384 pixels.
    do_crop (`bool`, defaults to `True`):
        Crop the picture to the bounding box of its ink.
    digit_size (`int`, defaults to 20):
        Length in pixels of the longer side of the digit after `do_resize` (MNIST uses 20).
    do_center (`bool`, defaults to `True`):
        Place the digit so that its centre of mass is at the centre of the output; otherwise its box is centred.
    num_channels (`int`, defaults to 1):
        Channels of `pixel_values`; 3 repeats the grayscale channel for a 3-channel model.
    """

    do_find_digit: bool
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

    do_find_digit = True
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
        do_find_digit: bool,
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
        every_step = do_find_digit and do_crop and do_resize and do_center
        for ink in images:
            if every_step and in_mnist_form(ink, size.height, size.width, digit_size):
                digits.append(ink * np.float32(255 / ink.max()))  # what every step would give, at once
                continue
            if do_find_digit:
                ink = find_digit(reduce_to_working_size(ink, WORKING_SIZE))
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


# --- finding the digit: the ink of the main, most central mark, white on black ----------------------------


def reduce_to_working_size(gray: np.ndarray, longest: int) -> np.ndarray:
    """Shrink (box filter) so that the longer side is at most `longest`; smaller pictures stay as they are."""
    height, width = gray.shape
    if max(height, width) <= longest:
        return gray
    scale = longest / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX), dtype=np.float32)


def in_mnist_form(gray: np.ndarray, height: int, width: int, digit_size: int) -> bool:
    """Already an MNIST digit: `height` x `width`, white ink on a black ground, the box of its ink `digit_size`
    long and its centre of mass at the centre, so that the steps would hand it back as it is (59,985 of
    MNIST's 60,000 training digits; about 100 times faster than finding the digit)."""
    if gray.shape != (height, width) or not gray.any():
        return False
    top, left, bottom, right = box_of(gray)
    return max(bottom - top, right - left) == digit_size and shift_to_center_of_mass(gray, height, width) == (0, 0)


def find_digit(gray: np.ndarray) -> np.ndarray:
    """The digit's ink, white on black at full strength; zeros if the picture holds no plausible digit.

    Ink is the difference to the paper around it (`ink_against_paper`), so that a light gradient, a shadow
    or a glare spot is not ink. The digit is the main, most central mark among the ink's connected pieces,
    without the straight lines that run across the picture (ruling, squares, the page's edge), specks and
    what lies along the border (desk, shadows; on plain paper nothing but ink can). A clean picture (MNIST, a
    canvas drawing with a pen as broad as MNIST's, a scan) comes back as it was, its ink at full strength. A
    picture where no digit is found is looked at once more with a margin of its paper around it: a digit cropped
    tight, whose strokes run along the border, is taken if it fills the picture and was mostly strokes at the
    first look (TIGHT_CROP_STROKES). A solid patch (desk beside a sticky note) or the tip of a shadow is no
    digit; thin strokes are widened (`with_mnist_strokes`).
    """
    ink, noise, digit, lines, strokes = digit_and_lines(gray)
    thumbnail = max(gray.shape) <= THUMBNAIL_SIZE
    if digit is None and not thumbnail and border_share(strokes) <= TIGHT_CROP_BORDER:
        margin = max(1, round(TIGHT_CROP_MARGIN * max(gray.shape)))
        inside = np.s_[margin:-margin, margin:-margin]
        padded_ink, padded_noise, padded_digit, padded_lines, _ = digit_and_lines(
            np.pad(gray, margin, constant_values=np.median(gray))
        )
        found = padded_digit is not None and fills(padded_digit[inside], TIGHT_CROP_MARGIN)
        if found and (padded_digit[inside] & strokes).sum() >= TIGHT_CROP_STROKES * padded_digit.sum():
            ink, noise, digit, lines = padded_ink[inside], padded_noise, padded_digit[inside], padded_lines[inside]
    if digit is None or is_patch(digit):
        return np.zeros_like(gray)
    near_digit = dilate(digit, max(3, odd(0.05 * digit_size(digit))))
    if lines.any():
        near_digit &= ~dilate(lines, 3)
    ink = np.clip(ink - noise, 0, None) * near_digit
    if ink.max() == 0:
        return ink
    ink = ink * (255 / ink.max())
    return ink if thumbnail else with_mnist_strokes(ink)


def with_mnist_strokes(ink: np.ndarray) -> np.ndarray:
    """Strokes thinner than MNIST's thin ones (THIN: a ballpoint's line on a big digit, a light font) widened to
    STROKE by a grey dilation, so that at 20 pixels they are as wide and as strong as MNIST's (a
    ballpoint's line would be a faint third of a pixel); strokes as wide as MNIST's stay as they are."""
    top, left, bottom, right = box_of(ink > 0)
    strokes = ink[top:bottom, left:right] > 0.25 * ink.max()
    width = 2 * strokes.sum() / max((strokes & ~erode(strokes, 3)).sum(), 1)
    size = digit_size(strokes)
    missing = STROKE * size - width
    if width >= THIN * size or missing < 1:
        return ink
    window = odd(missing + 1)  # widens each stroke by window - 1
    top, left = max(top - window, 0), max(left - window, 0)
    box = np.s_[top : bottom + window, left : right + window]
    widened = ink.copy()
    widened[box] = max_filter(ink[box], window)
    return widened


def is_patch(digit: np.ndarray) -> bool:
    """Whether the mark holds a solid square of SOLID of its longer side: a patch of desk or shadow."""
    top, left, bottom, right = box_of(digit)
    return bool(erode(digit[top:bottom, left:right], odd(SOLID * max(bottom - top, right - left))).any())


def digit_and_lines(gray: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None, np.ndarray, np.ndarray]:
    """The ink, its noise level, the digit's mask (None: no plausible digit), the ruling lines' mask and the strokes.

    Strokes are above the noise and at least a quarter as strong as the strongest ink; on a photo, the strongest
    ink away from what lies along the border (a dark desk would make a pale pencil's strokes too faint). Where
    the noise is over NOISY of the strongest ink (a dim photo), the ink is averaged over 3x3 pixels first: a
    third of the noise, so that the strokes stay whole, for a blur that the digit's reduction to 20 pixels hides.
    A mark that is the tip of a larger dark area (`in_dark_area`) is no digit.
    """
    ink, plain, dark = ink_against_paper(gray)
    noise, strongest = noise_level(ink), float(percentiles(ink, 99.9))
    thumbnail = max(ink.shape) <= THUMBNAIL_SIZE  # MNIST's 28x28, an icon: all digit, no desk, ruling or specks
    if not thumbnail and noise > NOISY * strongest:
        ink = box_blur_3x3(ink)
        noise, strongest = noise_level(ink), float(percentiles(ink, 99.9))
    faintest = max(noise, FAINTEST * float(percentiles(gray, 99.5)), 1.0)
    strokes = ink > max(0.25 * strongest, faintest)
    along = ALONG_BORDER * max(ink.shape)
    if not plain and not thumbnail and border_pixels(strokes).sum() > along:
        # desk or a shadow, far darker than the digit perhaps: pieces along the border (joined over 3 pixels, as
        # main_mark joins them) for longer than main_mark allows a digit
        at_border = dilate(along_border(dilate(strokes, 3), along), 3)
        if at_border.any() and not at_border.all():
            strongest = min(strongest, float(percentiles(ink[~at_border], 99.9)))
            strokes = ink > max(0.25 * strongest, faintest)
    if thumbnail:
        return ink, noise, (strokes if strokes.any() else None), np.zeros_like(strokes), strokes
    lines = np.zeros_like(strokes)
    rows, columns = straight_lines(ink > noise)  # faint ruling is whole just above the noise
    for family, axis, crossing in ((rows, 1, columns), (columns, 0, rows)):
        if family.any() and not is_long_stroke(family, crossing, axis, ink, faintest):
            # where a stroke crosses a line or runs along it, the pen's ink is darker than the lines'
            lines |= family & (ink < LINE_INK * percentiles(ink[family], 75))
    strokes &= ~lines
    digit = main_mark(strokes, plain)
    if digit is not None and not plain and in_dark_area(dark, digit, lines):
        digit = None
    return ink, noise, digit, lines, strokes


def is_long_stroke(family: np.ndarray, crossing: np.ndarray, axis: int, ink: np.ndarray, faintest: float) -> bool:
    """Whether a family of straight lines (along `axis`) is a pen's long straight stroke (a big 1, a 2's base):
    one line, with no lines of the other family (`crossing`: a margin line goes with ruling), that stops short of
    the picture's border at both ends, by a tenth of it (ruling, a margin line and the page's edge run to the
    border), and darker than a thin edge (a sticky note's: twice the faintest level a stroke may have)."""
    extent = np.nonzero(family.any(axis=1 - axis))[0]
    length = family.shape[axis]
    if crossing.any() or extent[0] <= 0.1 * length or extent[-1] >= 0.9 * length:
        return False
    return float(np.median(ink[family])) > 2 * faintest and connected_components(dilate(family, 5))[1] == 1


def in_dark_area(dark: np.ndarray, digit: np.ndarray, lines: np.ndarray) -> bool:
    """Whether the mark is part of a larger dark area rather than ink on paper: over DARK_SURROUNDINGS of the
    paper just around it (ruling aside) is as dark as the mark close by, in `dark` (the picture with its ink dark).
    A stroke is darker than the paper all around it; a soft shadow's tip (from a hand or the phone), narrower than
    the paper's window, is filled in like a stroke and read as a blob, but the shadow goes on beyond it, as dark."""
    top, left, bottom, right = box_of(digit)
    box = np.s_[max(top - 4, 0) : bottom + 4, max(left - 4, 0) : right + 4]  # the mark and the ring around it
    level, mark, ruling = dark[box], digit[box], lines[box]
    around = dilate(mark, 9) & ~dilate(mark, 3) & ~dilate(ruling, 3)  # 2 to 4 pixels from the mark
    if not around.any():
        return False
    weight = mark.astype(np.float32)
    near = box_sum(level * weight, 11) / np.maximum(box_sum(weight, 11), 1)  # the mark's mean level close by
    return float(np.mean(level[around] <= near[around])) > DARK_SURROUNDINGS


def along_border(mask: np.ndarray, length: float) -> np.ndarray:
    """The connected pieces of a mask that lie along the picture's border for over `length` pixels."""
    labels, count = connected_components(mask)
    return np.concatenate([[False], border_contact(labels, count) > length])[labels]


def border_contact(labels: np.ndarray, count: int) -> np.ndarray:
    """How many of the picture's border pixels each of the pieces labelled 1..count covers."""
    return np.bincount(border_pixels(labels), minlength=count + 1)[1:]


def border_share(strokes: np.ndarray) -> float:
    """The share of the picture's border that strokes cover: where a digit cropped tight crosses it, or much of
    it where desk shows around the page."""
    return float(border_pixels(strokes).mean())


def border_pixels(picture: np.ndarray) -> np.ndarray:
    """The values on the picture's border, each pixel once."""
    return np.concatenate([picture[0], picture[-1], picture[1:-1, 0], picture[1:-1, -1]])


def fills(mask: np.ndarray, margin: float) -> bool:
    """Whether the mask comes within `margin` (a fraction of the longer side) of all four sides of the picture:
    a digit cropped tight does; desk, shadows and the page's edge lie along one to three sides."""
    if not mask.any():
        return False
    reach = margin * max(mask.shape)
    top, left, bottom, right = box_of(mask)
    return max(top, left, mask.shape[0] - bottom, mask.shape[1] - right) <= reach


def digit_size(digit: np.ndarray) -> int:
    top, left, bottom, right = box_of(digit)
    return max(bottom - top, right - left)


def odd(length: float) -> int:
    return max(1, int(length) // 2 * 2 + 1)


def ink_against_paper(gray: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray]:
    """How far each pixel is from the paper around it, towards the ink's side (dark ink or light ink), whether
    the paper is plain, and the picture with its ink dark (the negative for light ink).

    The paper is the picture with every ink feature narrower than a window closed over (a morphological
    closing for dark ink, an opening for light ink): it follows gradients, soft shadows and the hard edge of
    a shadow, but not strokes. The window, 12% of the picture, is wider than a pen's stroke and narrower than
    most shadows. A stroke wider still (a felt pen, a bold pencil, a digit that fills the picture) stays in that
    paper as a patch sunk below the paper seen through a window of half the picture, as a shadow does; but a
    shadow reaches the picture's border (from a corner, a hand, the phone) and is lighter than a third of the
    paper around it. Where the patch lies inside the picture, or is that dark and darker than a third of the
    picture's typical level too (not the dark desk around a sticky note, which is the typical level), the paper
    is the wide window's.
    Plain paper (a drawing app's canvas, a typed digit, MNIST: half the picture or more within PLAIN of the ink's
    contrast from the lightest level) has no light to flatten: the ink is its difference to the typical level,
    however wide the strokes.
    """
    wide = max(2 * MIN_WINDOW + 1, odd(0.48 * max(gray.shape)))
    # a thumbnail (MNIST's 28x28, an icon) is all digit, with no room for shadows: wide windows only
    narrow = wide if max(gray.shape) <= THUMBNAIL_SIZE else max(MIN_WINDOW, odd(0.12 * max(gray.shape)))
    levels = percentiles(gray, [0.5, 50, 99.5])  # darkest, typical, lightest
    if not has_dark_ink(gray, narrow, *levels):  # the same on the negative picture
        gray, levels = 255 - gray, 255 - levels[::-1]
    darkest, typical, lightest = levels
    if lightest - typical <= PLAIN * (lightest - darkest):
        return np.clip(typical - gray, 0, None), True, gray
    paper, wide_paper = closing(gray, narrow), closing(gray, wide)
    # the narrow paper sinks below the wide one in a shadow, which reaches the border, and in a bold stroke
    deep = SUNK * (lightest - darkest)
    sunk = wide_paper - paper > deep
    bold = sunk & ~along_border(sunk, 0)
    if bold.any():
        bold = opening(bold, 5)  # narrower is the rim of a shadow, not a stroke
    # and the edges of the sunk patch, where the narrow paper sinks less: the stroke's pixels, darker than it
    bold |= dilate(bold, narrow) & (paper - gray > deep)
    return np.where(bold | (paper < np.minimum(wide_paper, typical) / 3), wide_paper, paper) - gray, False, gray


def has_dark_ink(gray: np.ndarray, window: int, darkest: float, typical: float, lightest: float) -> bool:
    """Dark ink on light paper, or light ink on a dark ground, from the picture's levels or else from its dark
    and light features narrower than `window` or than a third of it.

    A picture with nothing (within PLAIN of its contrast) on one side of its typical level has its ink on the
    other side: a drawing on a plain canvas, an MNIST digit. Otherwise strokes are narrow: the ink's side is the
    one whose narrow features stand out most, which a large dark desk (around a sticky note, its lightest part)
    or a bright glare spot does not change. Dark ink wins if it does at either width, at the 99.5th or the
    99.9th percentile: the rotated edges of a small note are light features at the full window that outweigh a
    ballpoint's thin strokes, and a ballpoint's 1 covers less than half a percent of the picture, where a shadow
    band's lit corners are light features at every percentile.
    A light feature counts only as far as it is lighter than the typical level: the paper inside the loop of
    a dark 9, or between the grains of a pencil stroke, is a narrow light feature too, but no lighter than paper.
    """
    if typical - darkest <= PLAIN * (lightest - typical):
        return False
    if lightest - typical <= PLAIN * (typical - darkest):
        return True
    for width in (window, odd(window / 3)):
        closed, opened = closing_and_opening(gray, width)
        dark, light = closed - gray, np.minimum(gray - opened, gray - typical)
        if (np.percentile(dark, [99.5, 99.9]) > np.percentile(light, [99.5, 99.9])).any():
            return True
    return False


def noise_level(ink: np.ndarray) -> float:
    """A level that background noise hardly reaches: 5 robust sigmas above the typical (paper) pixel."""
    sample = ink[::2, ::2]  # a quarter of the pixels tells the noise as well
    median = percentiles(sample, 50)
    return float(median + 5 * 1.4826 * percentiles(np.abs(sample - median), 50))


def percentiles(values: np.ndarray, q) -> np.ndarray:
    """`np.percentile(values, q)`, from a histogram where the values are whole numbers in [0, 255] (an 8-bit
    picture and its differences: about 4 times faster than numpy's partitioning on a 224x224 picture)."""
    whole = values.astype(np.uint8)
    if not np.array_equal(whole, values):
        return np.percentile(values, q)
    below = np.cumsum(np.bincount(whole.ravel(), minlength=256))  # how many values are at most 0, 1, ... 255
    position = np.asarray(q, dtype=np.float64) / 100 * (values.size - 1)  # in the sorted values
    lower = np.floor(position)
    low, high = np.searchsorted(below, [lower, np.minimum(lower + 1, values.size - 1)], side="right")
    return (low + (high - low) * (position - lower)).astype(values.dtype)


def straight_lines(strokes: np.ndarray, max_tilt: int = 20) -> list[np.ndarray]:
    """Pixels of the thin straight lines that cross the picture from border to border, tilted up to `max_tilt`:
    those along its rows and those along its columns, as two masks.

    Each line of a tilted family (rows, then columns; half a degree apart: a line between two tilts drifts
    under two pixels across the working size, over three at whole degrees) counts its thin ink pixels (with no
    ink a few pixels above and below) in each third of the picture. A line with such ink along at least half
    of every third, while the parallel lines a few pixels to either side hold far less, is a ruling line or
    a page edge; a broad stroke fills its neighbours too, and a written stroke never runs from border to
    border. Where a stroke crosses a line, its pixels are not thin and stay ink.
    """
    found = []
    tilts = np.deg2rad(np.linspace(-max_tilt, max_tilt, 4 * max_tilt + 1))[:, None]
    beside = max(2, round(0.01 * max(strokes.shape))) + 1  # lines are at most 1% of the picture thick
    for mask, transpose in ((strokes, False), (strokes.T, True)):
        # only ink with none `beside` pixels above and below can be on a thin, nearly level line
        thin = mask.copy()
        thin[beside:] &= ~mask[:-beside]
        thin[:-beside] &= ~mask[beside:]
        ys, xs = nonzero_pixels(thin)
        width = mask.shape[1]
        if ys.size < 0.5 * width:  # not enough ink for one line
            found.append(np.zeros_like(strokes))
            continue
        # (tilts, pixels): the line each pixel is on, in float32 (faster than float64 over 81 tilts)
        rows, columns, slopes = ys.astype(np.float32), xs.astype(np.float32), np.tan(tilts).astype(np.float32)
        offset = np.rint(rows - columns * slopes).astype(np.int32)
        offset -= offset.min() - beside
        lines_per_tilt = offset.max() + beside + 1
        index = (np.arange(len(tilts))[:, None] * lines_per_tilt + offset) * 3 + np.minimum(xs * 3 // width, 2)
        counts = np.bincount(index.ravel(), minlength=len(tilts) * lines_per_tilt * 3).reshape(len(tilts), -1, 3)
        counts = counts + np.roll(counts, -1, axis=1)  # a band of two lines: a tilt between the steps drifts a pixel
        total = counts.sum(axis=2)
        neighbours = np.maximum(np.roll(total, beside, axis=1), np.roll(total, -beside, axis=1))
        along = (counts >= 0.5 * width / 3 / np.cos(tilts)[..., None]).all(axis=2)
        line = along & (neighbours < 0.3 * total)  # (tilts, lines)
        line |= np.roll(line, 1, axis=1)  # both lines of a band
        found_at = line.any(axis=1)  # the few tilts where lines were found
        on_line = np.take_along_axis(line[found_at], offset[found_at], axis=1).any(axis=0)
        hits = np.zeros_like(mask)
        hits[ys[on_line], xs[on_line]] = True
        found.append(hits.T if transpose else hits)
    return found


def main_mark(strokes: np.ndarray, plain: bool) -> np.ndarray | None:
    """The main, most central mark and the pieces close to it, as a mask; None if nothing looks like a digit.

    Specks are not digits, nor are pieces lying along the picture's border (desk, shadows, the page's edge) for
    over 6% of its longer side, nor, on a photo, pieces at the border that reach less than SLIVER_DEPTH into the
    picture; on `plain` paper (a canvas, a typed digit, a scan), which has no desk or shadows, only pieces along
    the border for over a quarter of it: a digit drawn or set up to the picture's edge touches it along a bold
    stroke. The main piece is the largest upright one, weighted by how central it is (on a photo, a tenth of
    the picture long or more, and clear of the border if one such is: the page's edge can reach deep into it);
    pieces within a quarter of its size join it (the bar of a 7, the two strokes of a 4) if they are at most half
    again as long (not a remnant of ruling). A mark twice as wide as it is tall is no digit (a bit of ruling or
    of a shadow's edge); on plain paper, 2.5 times (3 of MNIST's 60,000 training digits are flatter than 2:1,
    none than 2.2:1).
    """
    labels, count = connected_components(dilate(strokes, 3))
    labels = labels * strokes
    height, width = strokes.shape
    ys, xs = nonzero_pixels(strokes)
    which = labels[ys, xs] - 1
    areas = np.bincount(which, minlength=count)
    top, bottom = np.full(count, height), np.zeros(count, np.int64)
    left, right = np.full(count, width), np.zeros(count, np.int64)
    np.minimum.at(top, which, ys)
    np.maximum.at(bottom, which, ys + 1)
    np.minimum.at(left, which, xs)
    np.maximum.at(right, which, xs + 1)
    size = np.maximum(bottom - top, right - left)
    # a stroke may run off the picture (a big drawing); desk, shadows and the page's edge lie along its border
    contact = border_contact(labels, count)
    plausible = (
        (areas >= 0.0005 * strokes.size)
        & (size >= 0.04 * max(height, width))
        & (contact <= (0.25 if plain else ALONG_BORDER) * max(height, width))
    )
    if not plain:  # a photo: no slivers of desk or shadow at its border
        depth = np.zeros(count, np.int64)  # how far each piece reaches into the picture from its border
        np.maximum.at(depth, which, np.minimum(np.minimum(ys, height - 1 - ys), np.minimum(xs, width - 1 - xs)))
        plausible &= (contact == 0) | (depth >= SLIVER_DEPTH * max(height, width))
    flattest = 0.4 if plain else 0.5
    # the main piece is upright (a flat one is a bit of ruling or of a shadow's edge); on a photo, where a
    # digit is a tenth of the picture or more, it is that large (not a speck of grain or of a shadow's edge)
    main_like = plausible & (bottom - top >= flattest * (right - left))
    if not plain:
        main_like &= size >= 0.1 * max(height, width)
        if (main_like & (contact == 0)).any():  # the digit is written on the page; desk and shadows reach in
            main_like &= contact == 0
    if not main_like.any():
        return None
    off_centre = np.hypot(((top + bottom) / 2 - height / 2) / height, ((left + right) / 2 - width / 2) / width)
    main = int(np.argmax(np.where(main_like, areas * (1 - off_centre), -1)))
    gap = 0.25 * size[main]
    close = (
        plausible
        & (areas >= 0.05 * areas[main])
        & (size <= 1.5 * size[main])
        & (top <= bottom[main] + gap) & (bottom >= top[main] - gap)
        & (left <= right[main] + gap) & (right >= left[main] - gap)
    )
    top, left, bottom, right = top[close].min(), left[close].min(), bottom[close].max(), right[close].max()
    if bottom - top < flattest * (right - left):
        return None
    digit = np.zeros_like(strokes)
    digit[top:bottom, left:right] = np.concatenate([[False], close])[labels[top:bottom, left:right]]
    return digit


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a non-empty mask, bottom and right exclusive."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def nonzero_pixels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.nonzero` of a 2-D array, rows and columns in the same order, from the flat indices (several
    times faster: numpy's 2-D nonzero costs over 100 us even on an empty 224x224 mask)."""
    flat = np.flatnonzero(mask)
    rows = flat // mask.shape[1]
    return rows, flat - rows * mask.shape[1]


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected pieces of a mask 1..count (0: background), from its runs of pixels along rows.

    Runs in neighbouring rows that touch (diagonally too) are joined by repeated hooking and pointer
    jumping, all in numpy.
    """
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    rows, columns = nonzero_pixels(np.diff(padded, axis=1))  # in each row a run's start, then one past its end
    start_rows, starts, end_rows, ends = rows[::2], columns[::2], rows[1::2], columns[1::2]
    if starts.size == 0:
        return np.zeros((height, width), np.int32), 0
    stride = width + 2
    # runs of the next row that touch each run: start <= end and end >= start - 1 (in one sorted key space)
    next_row_starts = start_rows * stride + starts
    next_row_ends = end_rows * stride + ends
    first = np.searchsorted(next_row_ends, (start_rows + 1) * stride + starts, side="left")
    last = np.searchsorted(next_row_starts, (start_rows + 1) * stride + ends, side="right")
    touching = np.maximum(last - first, 0)
    run_a = np.repeat(np.arange(starts.size), touching)
    run_b = np.arange(touching.sum()) - np.repeat(np.cumsum(touching) - touching, touching) + np.repeat(first, touching)
    parent = np.arange(starts.size)
    while True:
        root_a, root_b = parent[run_a], parent[run_b]
        if np.array_equal(root_a, root_b):
            break
        np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
        while not np.array_equal(parent, parent[parent]):
            parent = parent[parent]
    label_of_root = np.cumsum(parent == np.arange(starts.size))  # 1, 2, ... in the order of the roots
    labels = np.zeros((height, stride), np.int32)
    lengths = ends - starts
    flat = np.repeat(start_rows * stride + starts, lengths) + np.arange(lengths.sum()) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    labels.ravel()[flat] = np.repeat(label_of_root[parent], lengths)
    return labels[:, :width], int(label_of_root[-1])


# --- morphology: running maxima along each axis, numpy only ---------------------


def running_max(values: np.ndarray, window: int, axis: int) -> np.ndarray:
    """The maximum over a centred window of odd length along one axis; the border repeats the edge.

    By doubling: the maxima over 1, 2, 4, ... values, and a window's maximum from two overlapping spans, in
    log2(window) whole-array steps.
    """
    if window <= 1:
        return values
    values = np.swapaxes(values, 0, axis)
    length, half = values.shape[0], window // 2
    maxima = np.concatenate([np.repeat(values[:1], half, axis=0), values, np.repeat(values[-1:], half, axis=0)])
    span = 1
    while 2 * span <= window:  # maxima[i] = max(padded[i : i + span])
        maxima = np.maximum(maxima[:-span], maxima[span:])
        span *= 2
    result = np.maximum(maxima[:length], maxima[window - span : window - span + length])
    return np.swapaxes(result, 0, axis)


def max_filter(values: np.ndarray, window: int) -> np.ndarray:
    """The maximum over a square window in the last two axes (those of a picture)."""
    return running_max(running_max(values, window, -2), window, -1)


def min_filter(values: np.ndarray, window: int) -> np.ndarray:
    return -max_filter(-values, window)


def closing_and_opening(gray: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """`closing` and opening (light features narrower than `window` removed) at once: the picture and its
    negative filtered as one stack, in half the steps."""
    minus_closed, opened = max_filter(-max_filter(np.stack([gray, -gray]), window), window)
    return -minus_closed, opened


def closing(gray: np.ndarray, window: int) -> np.ndarray:
    """Dark features narrower than `window` filled in with their surroundings' brightness."""
    return min_filter(max_filter(gray, window), window)


def box_sum(values: np.ndarray, window: int) -> np.ndarray:
    """The sum over a centred square window of odd length; nothing beyond the picture counts."""
    half = window // 2
    sums = np.cumsum(np.pad(values, half + 1)[:-1, :-1], axis=0)  # a zero before each window's first value
    sums = np.cumsum(sums[window:] - sums[:-window], axis=1)
    return sums[:, window:] - sums[:, :-window]


def box_blur_3x3(values: np.ndarray) -> np.ndarray:
    """The mean over each pixel's 3x3 neighbourhood; the border repeats the edge."""
    padded = np.pad(values, 1, mode="edge")
    rows = (padded[:-2] + padded[1:-1] + padded[2:]) / 3
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 3


def dilate(mask: np.ndarray, window: int) -> np.ndarray:
    return max_filter(mask.astype(np.uint8), window).astype(bool)


def opening(mask: np.ndarray, window: int) -> np.ndarray:
    """The mask without the parts narrower than `window`."""
    return dilate(erode(mask, window), window)


def erode(mask: np.ndarray, window: int) -> np.ndarray:
    """The pixels whose whole window lies in the mask; nothing beyond the picture is in it."""
    return ~dilate(~np.pad(mask, 1), window)[1:-1, 1:-1]


# --- the MNIST steps on one (H, W) float32 picture ------------------------------------------------------


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
    if ink.sum() == 0:
        return canvas
    if by_center_of_mass:
        top, left = shift_to_center_of_mass(ink, height, width)
    else:
        top, left = (height - ink.shape[0]) // 2, (width - ink.shape[1]) // 2
    # the part of the shifted ink that lies on the canvas
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ink.shape[0], height), min(left + ink.shape[1], width)
    if y0 < y1 and x0 < x1:
        canvas[y0:y1, x0:x1] = ink[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def shift_to_center_of_mass(ink: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """Where `ink`'s top-left corner goes on a (height, width) canvas so that its centre of mass lands on pixel
    (height // 2, width // 2), to the nearest pixel. `ink` must hold some ink."""
    total = ink.sum()
    center_y = ink.sum(axis=1) @ np.arange(ink.shape[0]) / total
    center_x = ink.sum(axis=0) @ np.arange(ink.shape[1]) / total
    return round(height // 2 - center_y), round(width // 2 - center_x)


def per_channel(values, num_channels: int) -> np.ndarray:
    """Mean or std as a (C, 1, 1) array; one value serves all channels."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size not in (1, num_channels):
        raise ValueError(f"Expected 1 or {num_channels} values for image_mean and image_std, got {values.size}.")
    return np.broadcast_to(values, (num_channels,))[:, None, None]


__all__ = ["MnistViTImageProcessor"]
