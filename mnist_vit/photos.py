"""Synthetic pictures of digits as people have them (phone photos, drawings, typed digits): test and benchmark sets.

A photo is a sheet of paper (tinted, grainy, maybe ruled or squared) under uneven light, with one MNIST digit
written on it in ballpoint or pencil (a line of the pen's width along the digit's strokes) or felt pen (MNIST's
own strokes), rotated, blurred, noisy and saved as a JPEG, as a phone takes it:

    rng = np.random.default_rng(0)
    jpeg_bytes = phone_photo(mnist_digit, "ruled", rng)
    Image.open(io.BytesIO(jpeg_bytes))  # then ImageOps.exif_transpose, as every reader of phone photos does

Each photo draws the ordinary variations (paper tint and grain, a gentle light gradient, ink, a small tilt, blur,
noise, JPEG quality 70-90) and shows one condition strongly: an ordinary one from `ORDINARY_CONDITIONS` or a
harder one from `HARD_CONDITIONS`; with no digit, the same sheet is blank. `drawing` is a digit drawn black on
white on a canvas, `typed_digit` a digit set in a font. Only numpy and PIL: nothing here needs a model.
"""

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .image_processing_mnist_vit import connected_components

ORDINARY_CONDITIONS = (
    "plain", "gradient", "soft shadow", "ruled", "squared", "blue ballpoint", "black ballpoint", "felt pen",
    "pencil", "rotated", "blurred", "noisy", "sideways", "page edge", "desk strip",
)
HARD_CONDITIONS = ("sticky note", "angle", "shadow band", "glare", "dim", "faint pencil")

# EXIF orientation tags: how the stored pixels must be turned to stand upright (what exif_transpose undoes)
EXIF_ORIENTATION = 0x0112
SIDEWAYS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}  # tag -> how the camera stored them

INKS = {  # RGB of the ink at full strength, and its opacity
    "black ballpoint": ((25, 25, 35), (0.85, 1.0)),
    "blue ballpoint": ((30, 45, 140), (0.85, 1.0)),
    "felt pen": ((15, 15, 20), (0.95, 1.0)),
    "pencil": ((70, 70, 75), (0.6, 0.85)),
    "faint pencil": ((120, 120, 125), (0.35, 0.55)),
}
LINE_COLOURS = ((150, 180, 230), (170, 170, 175), (140, 190, 220))  # blue, grey, cyan ruling
# A ballpoint's or a pencil's line is as wide as the pen's tip, whatever the digit's size: a share of the digit's
# longer side (0.5-0.7 mm on digits 8-30 mm tall), far under MNIST's strokes (about 0.11)
LINE_WIDTHS = {"black ballpoint": (0.02, 0.07), "blue ballpoint": (0.02, 0.07), "pencil": (0.025, 0.08),
               "faint pencil": (0.025, 0.08)}
# A felt pen's and a drawing app's brush's strokes are MNIST's own, cut at this level of the enlarged digit
STROKE_LEVELS = {"felt pen": 0.3, "brush": 0.55}
# The resolution, in times MNIST's, at which a pen's line follows the strokes: its steps are then at most half
# as wide as the thinnest line, whose blur hides them
FINE = 12


def phone_photo(
    digit: np.ndarray | None, condition: str, rng: np.random.Generator, long_side: tuple[int, int] = (600, 4000)
) -> bytes:
    """A JPEG file (bytes) of `digit` (an MNIST digit: uint8 28x28, white on black; None: a blank sheet)
    photographed under `condition`."""
    if condition not in ORDINARY_CONDITIONS + HARD_CONDITIONS:
        raise ValueError(f"Unknown condition {condition!r}; expected one of {ORDINARY_CONDITIONS + HARD_CONDITIONS}.")
    side = int(rng.integers(long_side[0], long_side[1] + 1))
    height, width = (side * 3 // 4, side) if rng.random() < 0.5 else (side, side * 3 // 4)
    tilt = rng.uniform(-15, 15) if condition in ("rotated", "angle") else rng.uniform(-4, 4)

    paper = paper_colour(rng, condition)
    page = np.ones((height, width, 1), np.float32) * paper * grain(height, width, rng, strength=0.03)
    if condition in ("ruled", "squared"):
        page = draw_ruling(page, tilt, squared=condition == "squared", rng=rng)

    ink_name = condition if condition in INKS else ("blue ballpoint", "black ballpoint")[rng.integers(2)]
    # A blank sheet still gets a digit's place (where a sticky note or a glare spot goes), with no ink.
    strokes, box = written_digit(np.full((20, 14), 255, np.uint8) if digit is None else digit, (height, width),
                                 tilt, ink_name, rng)
    strokes *= digit is not None
    ink_rgb, opacity = INKS[ink_name]
    coverage = strokes * rng.uniform(*opacity)
    if ink_name.endswith("pencil"):  # graphite leaves a grainy trace
        coverage *= grain(height, width, rng, strength=0.15, scale=side / 400)[..., 0]
    page = page * (1 - coverage[..., None]) + np.float32(ink_rgb) * coverage[..., None]

    page = surroundings(page, condition, box, rng)
    page = page * lighting(height, width, condition, rng)[..., None]
    if condition == "glare":
        spot = blob(height, width, centre=near(box, rng), sigma=side * rng.uniform(0.05, 0.12))
        page = page + (255 - page) * (spot * rng.uniform(0.6, 0.9))[..., None]

    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    if condition == "angle":
        image = perspective(image, rng)
    blur = side / 1000 * (rng.uniform(1.5, 3.0) if condition == "blurred" else rng.uniform(0.3, 1.0))
    image = image.filter(ImageFilter.GaussianBlur(blur))
    noise = {"noisy": (6, 10), "dim": (10, 16)}.get(condition, (1.5, 4))
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(*noise), (height, width, 1)).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return to_jpeg(image, quality=int(rng.integers(40, 61) if condition == "dim" else rng.integers(70, 91)),
                   sideways=condition == "sideways", rng=rng)


def paper_colour(rng: np.random.Generator, condition: str) -> np.ndarray:
    if condition == "sticky note":
        return np.float32(((255, 236, 120), (250, 200, 215), (200, 240, 185), (255, 210, 150))[rng.integers(4)])
    white = rng.uniform(225, 252)
    return np.float32([white, white * rng.uniform(0.97, 1.0), white * rng.uniform(0.88, 1.0)])


def grain(height: int, width: int, rng: np.random.Generator, strength: float, scale: float = 1.0) -> np.ndarray:
    """(H, W, 1) factors around 1: smooth paper texture (noise drawn coarse and enlarged)."""
    coarse = rng.normal(0, 1, (max(2, int(height / 4 / scale)), max(2, int(width / 4 / scale)))).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
    return (1 + strength * np.clip(smooth, -2.5, 2.5))[..., None]


def draw_ruling(page: np.ndarray, tilt: float, squared: bool, rng: np.random.Generator) -> np.ndarray:
    """Thin lines every few percent of the page, tilted with it; a squared sheet has columns too."""
    height, width = page.shape[:2]
    spacing = max(height, width) * rng.uniform(0.035, 0.07)
    thickness = max(1.0, max(height, width) * rng.uniform(0.0008, 0.002))
    colour = np.float32(LINE_COLOURS[rng.integers(len(LINE_COLOURS))])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.deg2rad(tilt)
    across = -xs * np.sin(angle) + ys * np.cos(angle)  # distance along the page's vertical
    coverage = line_coverage(across, spacing, thickness, rng.uniform(0, spacing))
    if squared:
        along = xs * np.cos(angle) + ys * np.sin(angle)
        coverage = np.maximum(coverage, line_coverage(along, spacing, thickness, rng.uniform(0, spacing)))
    strength = rng.uniform(0.5, 0.9)
    coverage = (coverage * strength)[..., None]
    return page * (1 - coverage) + colour * coverage


def line_coverage(position: np.ndarray, spacing: float, thickness: float, offset: float) -> np.ndarray:
    """1 on lines `thickness` wide every `spacing`, fading out over a pixel at their edges."""
    distance = np.abs((position - offset + spacing / 2) % spacing - spacing / 2)
    return np.clip(thickness / 2 + 0.5 - distance, 0, 1)


def written_digit(
    digit: np.ndarray, shape: tuple[int, int], tilt: float, ink: str, rng: np.random.Generator,
    length: tuple[float, float] = (0.2, 0.6),
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The digit's ink coverage (H, W) in [0, 1] at a random place, its longer side `length` of the picture's,
    and its box (top, left, bottom, right). A ballpoint or a pencil draws a line along the middle of MNIST's
    strokes (LINE_WIDTHS), a felt pen or a brush MNIST's strokes themselves (STROKE_LEVELS)."""
    height, width = shape
    rows, cols = np.nonzero(digit.max(axis=1))[0], np.nonzero(digit.max(axis=0))[0]
    cropped = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    length = max(height, width) * rng.uniform(*length)
    length = min(length, 0.85 * min(height, width))
    scale = length / max(cropped.shape)
    size = (max(1, round(cropped.shape[1] * scale)), max(1, round(cropped.shape[0] * scale)))
    strokes = pen_line(cropped, size, rng.uniform(*LINE_WIDTHS[ink]) * length) if ink in LINE_WIDTHS else None
    if strokes is None:
        enlarged = Image.fromarray(cropped).resize(size, Image.Resampling.BICUBIC)
        enlarged = enlarged.filter(ImageFilter.GaussianBlur(scale / 2))  # the enlarged 28x28 grid would show as steps
        # A pen draws crisp strokes: a steep ramp around a level that sets the stroke width.
        level = STROKE_LEVELS.get(ink, STROKE_LEVELS["brush"]) + rng.uniform(-0.1, 0.1)
        strokes = np.clip((np.asarray(enlarged, np.float32) / 255 - level) * 4 + 0.5, 0, 1)
    turned = Image.fromarray(strokes).rotate(tilt + rng.uniform(-5, 5), Image.Resampling.BICUBIC, expand=True)
    strokes = np.clip(np.asarray(turned), 0, 1)
    sh, sw = strokes.shape
    margin = int(0.04 * max(height, width))  # the whole digit is in the picture, away from its borders
    top = int(rng.integers(margin, max(margin + 1, height - sh - margin)))
    left = int(rng.integers(margin, max(margin + 1, width - sw - margin)))
    coverage = np.zeros((height, width), np.float32)
    coverage[top : top + sh, left : left + sw] = strokes[: height - top, : width - left]
    return coverage, (top, left, min(top + sh, height), min(left + sw, width))


def pen_line(digit: np.ndarray, size: tuple[int, int], width: float) -> np.ndarray | None:
    """Coverage (size[1], size[0]) in [0, 1] of a line `width` pixels wide along the middle of `digit`'s strokes:
    their skeleton, found at FINE times MNIST's resolution, enlarged and spread by a blur as wide as the line.
    None where that line would not be the digit: its strokes (down to MNIST's faint edges) fall apart, or a loop
    is filled in (a bold 9's, whose skeleton is a stick)."""
    fine = np.asarray(Image.fromarray(digit).resize((digit.shape[1] * FINE, digit.shape[0] * FINE),
                                                    Image.Resampling.BICUBIC))
    traced = fine > 64
    if pieces(traced) > 1 or holes(traced) < holes(fine > 127):
        return None
    skeleton = Image.fromarray(thinned(traced).astype(np.uint8) * 255)
    sigma = max(width, 1.0) / 2.4  # a blurred line's half-height width is 2.35 sigma
    blurred = skeleton.resize(size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(sigma))
    # A straight skeleton line, one fine pixel (size[0] / fine.shape[1] pixels) wide, peaks at this after the blur
    peak = 255 * min(1.0, size[0] / fine.shape[1] / (np.sqrt(2 * np.pi) * sigma))
    return np.clip((np.asarray(blurred, np.float32) / peak - 0.5) * 4 + 0.5, 0, 1)


def pieces(mask: np.ndarray) -> int:
    return connected_components(mask)[1]


def holes(mask: np.ndarray) -> int:
    """Pieces of background that the mask encloses."""
    return pieces(~np.pad(mask, 1)) - 1


def thinned(mask: np.ndarray) -> np.ndarray:
    """The one-pixel skeleton of `mask` (Zhang and Suen's thinning, 1984)."""
    skeleton = np.pad(mask, 1).astype(np.uint8)
    while True:
        removed = False
        for step in (0, 1):
            # the eight neighbours, clockwise from the one above
            p = [np.roll(skeleton, shift, axis=(0, 1))[1:-1, 1:-1] for shift in
                 ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))]
            neighbours = sum(p)
            transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                free = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                free = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            delete = (skeleton[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & free
            skeleton[1:-1, 1:-1][delete] = 0
            removed |= bool(delete.any())
        if not removed:
            return skeleton[1:-1, 1:-1].astype(bool)


def surroundings(page: np.ndarray, condition: str, box: tuple, rng: np.random.Generator) -> np.ndarray:
    """The desk around the paper: a strip at one border, the page's edge, or a sticky note's whole surround."""
    height, width = page.shape[:2]
    desk = np.float32(((95, 70, 50), (60, 60, 65), (130, 110, 90), (40, 45, 55))[rng.integers(4)])
    desk = desk * grain(height, width, rng, strength=0.08)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if condition == "sticky note":
        top, left, bottom, right = box
        margin = max(bottom - top, right - left) * rng.uniform(0.15, 0.4)
        angle = np.deg2rad(rng.uniform(-10, 10))
        cy, cx = (top + bottom) / 2, (left + right) / 2
        u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
        half = max(bottom - top, right - left) / 2 + margin
        on_note = np.clip(half + 0.5 - np.maximum(np.abs(u), np.abs(v)), 0, 1)[..., None]
        return page * on_note + desk * (1 - on_note)
    if condition not in ("page edge", "desk strip"):
        return page
    # The paper ends a few percent from one border (not over the digit); beyond it lies the desk.
    side = int(rng.integers(4))
    top, left, bottom, right = box
    slope = np.tan(np.deg2rad(rng.uniform(-3, 3)))
    room = (height - bottom, top, width - right, left)[side] - abs(slope) * max(height, width)
    depth = max(0.0, min(rng.uniform(0.03, 0.12) * (height if side < 2 else width), 0.8 * room))
    distance = {
        0: ys - (ys.max() - depth) - slope * xs,  # bottom
        1: depth - ys - slope * xs,  # top
        2: xs - (xs.max() - depth) - slope * ys,  # right
        3: depth - xs - slope * ys,  # left
    }[side]
    off_paper = np.clip(distance + 0.5, 0, 1)[..., None]
    return page * (1 - off_paper) + desk * off_paper


def lighting(height: int, width: int, condition: str, rng: np.random.Generator) -> np.ndarray:
    """(H, W) brightness factors: always a gentle gradient, and the condition's shadow, gradient or dimness."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (xs / width - 0.5) * np.cos(direction) + (ys / height - 0.5) * np.sin(direction)  # about -0.7..0.7
    strength = rng.uniform(0.3, 0.5) if condition == "gradient" else rng.uniform(0.0, 0.12)
    light = 1 - strength * (ramp + 0.7) / 1.4
    side = max(height, width)
    if condition == "soft shadow":  # a hand or the phone, from a corner
        corner = (rng.integers(2) * height, rng.integers(2) * width)
        light = light * (1 - rng.uniform(0.3, 0.5) * blob(height, width, corner, side * rng.uniform(0.3, 0.5)))
    if condition == "shadow band":  # the phone's own shadow: hard-edged, across the page
        angle = rng.uniform(0, np.pi)
        across = (xs - width / 2) * np.cos(angle) + (ys - height / 2) * np.sin(angle)
        start = rng.uniform(-0.4, 0.2) * side
        band = np.clip(across - start, 0, 1) * np.clip(start + side * rng.uniform(0.15, 0.5) - across, 0, 1)
        light = light * (1 - rng.uniform(0.35, 0.55) * band)
    if condition == "dim":
        light = light * rng.uniform(0.25, 0.45)
    return light


def blob(height: int, width: int, centre: tuple[float, float], sigma: float) -> np.ndarray:
    """A Gaussian spot of height 1 at `centre` (y, x)."""
    ys, xs = np.ogrid[0:height, 0:width]
    return np.exp(-(((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2) / (2 * sigma**2))).astype(np.float32)


def near(box: tuple, rng: np.random.Generator) -> tuple[float, float]:
    """A point around the box: on it or up to one box length away."""
    top, left, bottom, right = box
    size = max(bottom - top, right - left)
    return ((top + bottom) / 2 + rng.uniform(-1, 1) * size, (left + right) / 2 + rng.uniform(-1, 1) * size)


def perspective(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The page seen at an angle: each corner pulled in by up to 12% of the side, the desk showing around it."""
    width, height = image.size
    corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], np.float64)
    pulled = corners + rng.uniform(0, 0.12, (4, 2)) * np.array([width, height]) * np.sign(
        np.array([width, height]) / 2 - corners
    )
    # PIL wants the 8 coefficients that map output coordinates (the pulled corners) to input ones (the corners).
    rows = []
    for (x, y), (u, v) in zip(pulled, corners):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coefficients = np.linalg.solve(np.array(rows), corners.reshape(-1))
    seen = image.transform(image.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC)
    on_page = Image.new("L", image.size, 255).transform(image.size, Image.Transform.PERSPECTIVE, coefficients)
    desk = Image.new("RGB", image.size, tuple(int(c) for c in rng.integers(30, 90, 3)))
    return Image.composite(seen, desk, on_page)


def to_jpeg(image: Image.Image, quality: int, sideways: bool, rng: np.random.Generator) -> bytes:
    """JPEG bytes; a sideways photo is stored turned, with the EXIF tag that turns it back."""
    exif = Image.Exif()
    if sideways:
        tag = (6, 8)[rng.integers(2)]
        image = image.transpose(SIDEWAYS[tag])
        exif[EXIF_ORIENTATION] = tag
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def drawing(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """`digit` drawn black on a white canvas of 200-400 px, as a drawing app exports it: thicker or thinner
    strokes, the digit 40-90% of the canvas, anywhere on it."""
    side = int(rng.integers(200, 401))
    strokes, _ = written_digit(digit, (side, side), 0.0, "felt pen" if rng.random() < 0.5 else "brush", rng,
                               length=(0.4, 0.9))
    return Image.fromarray((255 * (1 - strokes)).astype(np.uint8))


def typed_digit(label: int, font_path: str, rng: np.random.Generator) -> Image.Image:
    """The digit `label` set in the font at `font_path`, black on white, 40-90% of a 100-300 px picture."""
    side = int(rng.integers(100, 301))
    font = ImageFont.truetype(font_path, size=int(side * rng.uniform(0.4, 0.9)))
    picture = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox((0, 0), str(label), font=font)
    x = rng.uniform(0, max(1, side - (right - left))) - left
    y = rng.uniform(0, max(1, side - (bottom - top))) - top
    draw.text((x, y), str(label), fill=0, font=font)
    return picture


def photo_set(
    digits: np.ndarray, labels: np.ndarray, conditions: tuple[str, ...], per_condition: int, seed: int,
    long_side: tuple[int, int] = (600, 4000),
) -> list[tuple[str, int, bytes]]:
    """`per_condition` photos of each condition as (condition, label, JPEG bytes), digits drawn from `digits`."""
    rng = np.random.default_rng(seed)
    photos = []
    for condition in conditions:
        for index in rng.choice(len(digits), per_condition, replace=False):
            photos.append((condition, int(labels[index]), phone_photo(digits[index], condition, rng, long_side)))
    return photos


__all__ = ["HARD_CONDITIONS", "ORDINARY_CONDITIONS", "drawing", "phone_photo", "photo_set", "typed_digit"]
