"""Digits typed in this machine's fonts, added to the training split with `train.py --typed_digits N`.

MNIST is handwriting only; people also upload printed digits (a screenshot, a label, a typed page). Each extra
training picture is one digit set in one of the installed fonts that set all ten digits (`training_fonts`),
black on white at a random size and place (`photos.typed_digit`); the image processor then brings it to MNIST's
form like every other training picture. The fonts the benchmarks and tests type their digits in (matplotlib's
DejaVu, STIX and Computer Modern) are left out, so that those measure fonts the model has not seen.
"""

from pathlib import Path

import datasets
import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from .errors import UserError
from .photos import typed_digit

HELD_OUT_FONTS = ("DejaVu", "STIX", "cm")  # file names starting so: the benchmarks' fonts


def sets_the_digits(path: str) -> bool:
    """Whether the font sets ten different digits, none of them the box a font draws for a missing glyph, each
    at most 1.25 times as wide as tall (a dingbat font puts pictures where the digits are)."""
    try:
        font = ImageFont.truetype(path, size=32)
    except OSError:
        return False

    def glyph(character: str) -> bytes:
        picture = Image.new("L", (48, 48), 0)
        ImageDraw.Draw(picture).text((4, 4), character, fill=255, font=font)
        return picture.tobytes()

    def upright(character: str) -> bool:
        left, top, right, bottom = font.getbbox(character)
        return right - left <= 1.25 * (bottom - top)

    glyphs = {glyph(str(digit)) for digit in range(10)}
    distinct = len(glyphs) == 10 and glyph("\uffff") not in glyphs and bytes(48 * 48) not in glyphs
    return distinct and all(upright(str(digit)) for digit in range(10))


def training_fonts() -> list[Path]:
    """The installed fonts that set the ten digits, except the held-out ones, in a fixed order."""
    paths = sorted(Path(path) for path in font_manager.findSystemFonts())
    return [path for path in paths if not path.name.startswith(HELD_OUT_FONTS) and sets_the_digits(str(path))]


def typed_digits_split(count: int, features: datasets.Features, seed: int) -> datasets.Dataset:
    """`count` typed digits (the ten in turn, the fonts in turn) as rows of a split with these `image` and
    `label` features, whose label names must include "0" to "9". The same `seed` gives the same pictures."""
    names = features["label"].names
    missing = [str(digit) for digit in range(10) if str(digit) not in names]
    if missing:
        raise UserError(f"--typed_digits adds the digits 0-9, but this dataset's labels lack {', '.join(missing)} "
                        f"(its labels: {', '.join(names[:12])}): leave --typed_digits out.")
    fonts = training_fonts()
    if not fonts:
        raise UserError("--typed_digits found no installed font that sets the digits: install some (on Debian: "
                        "apt install fonts-liberation), or leave --typed_digits out.")
    rng = np.random.default_rng(seed)
    digits = [index % 10 for index in range(count)]
    images = [typed_digit(digit, str(fonts[index // 10 % len(fonts)]), rng) for index, digit in enumerate(digits)]
    labels = [names.index(str(digit)) for digit in digits]
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
