import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from transformers import AutoImageProcessor, pipeline
from transformers.image_utils import PILImageResampling

from conftest import ink_on_transparency
from mnist_vit import MnistViTConfig, MnistViTForImageClassification, image_processing_mnist_vit
from mnist_vit.data import read_idx
from mnist_vit.image_processing_mnist_vit import (
    MnistViTImageProcessor,
    closing,
    closing_and_opening,
    crop_to_ink,
    find_digit,
    in_mnist_form,
    nonzero_pixels,
    percentiles,
    place_on_canvas,
    resize_longer_side,
    running_max,
)

MEAN, STD = 0.1307, 0.3081


def pixels(processor, images, **kwargs) -> np.ndarray:
    return processor(images, return_tensors="np", **kwargs)["pixel_values"]


def unnormalized(processor, images) -> np.ndarray:
    """(B, 28, 28) in [0, 1]: the processor's output with the normalisation undone."""
    return pixels(processor, images)[:, 0] * STD + MEAN


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def correlation_up_to_a_pixel(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation of `a` shifted by at most one pixel each way with `b`."""
    return max(correlation(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the nonzero pixels."""
    rows, cols = np.nonzero(image.any(axis=1))[0], np.nonzero(image.any(axis=0))[0]
    return rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def upload(digit: np.ndarray) -> Image.Image:
    """The digit as a user might upload it: black on white, 6x larger, off-centre on a 320x240 page."""
    enlarged = Image.fromarray(255 - digit).resize((168, 168), Image.Resampling.BILINEAR)
    page = Image.new("L", (320, 240), 255)
    page.paste(enlarged, (120, 20))
    return page


def on_coloured_paper(page: Image.Image) -> Image.Image:
    whiteness = np.asarray(page, dtype=np.float32)[..., None] / 255
    ink, paper = np.array([20, 30, 90]), np.array([250, 235, 170])  # dark blue on pale yellow
    return Image.fromarray((paper * whiteness + ink * (1 - whiteness)).astype(np.uint8))


def on_noisy_grey_paper(page: Image.Image) -> Image.Image:
    """Like a photo: grey pencil on grey paper, with camera noise."""
    whiteness = np.asarray(page, dtype=np.float32) / 255
    noise = np.random.default_rng(0).normal(0, 2, whiteness.shape)
    return Image.fromarray(np.clip(60 + 130 * whiteness + noise, 0, 255).astype(np.uint8))


def as_jpeg(page: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    page.save(buffer, "JPEG", quality=75)  # rings faintly around the strokes
    return Image.open(buffer)


UPLOADS = {
    "L": lambda page: page,
    "L thickened": lambda page: page.filter(ImageFilter.MinFilter(3)),  # min of black on white = max of the ink
    "L JPEG": as_jpeg,
    "L noisy grey paper": on_noisy_grey_paper,
    "RGB coloured paper": on_coloured_paper,
    "RGBA black ink": lambda page: ink_on_transparency(255 - np.asarray(page), 0),
    "RGBA white ink": lambda page: ink_on_transparency(255 - np.asarray(page), 255),
    "P": lambda page: page.convert("P"),
    "I;16": lambda page: Image.fromarray(np.asarray(page).astype(np.uint16) * 257),
    "1": lambda page: page.convert("1", dither=Image.Dither.NONE),
}


@pytest.fixture
def processor():
    return MnistViTImageProcessor()


def test_mnist_digits_pass_through_unchanged(processor, mnist_dir):
    """MNIST digits are what the processor makes: of all 10,000 test digits, 3 correlate below 0.999."""
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:2000]
    out = processor(list(images), return_tensors="pt")["pixel_values"]
    assert out.shape == (len(images), 1, 28, 28) and out.dtype == torch.float32
    back = out[:, 0].numpy() * STD + MEAN
    correlations = np.array([correlation(result, digit) for digit, result in zip(images, back)])
    assert (correlations < 0.999).sum() <= 2 and correlations.min() > 0.9


def test_a_digit_in_mnist_form_is_what_every_step_would_make_of_it(mnist_dir):
    """The shortcut for pictures already in MNIST's form gives what finding, cropping, resizing and centring give."""
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:300].astype(np.float32)
    in_form = [digit for digit in images if in_mnist_form(digit, 28, 28, 20)]
    assert len(in_form) >= 295
    for digit in in_form:
        steps = resize_longer_side(crop_to_ink(find_digit(digit)), 20, PILImageResampling.LANCZOS)
        assert correlation(place_on_canvas(steps, 28, 28, by_center_of_mass=True), digit) > 0.99
    digit = in_form[0]
    not_in_form = {
        "black on white": 255 - digit,
        "moved 3 pixels": np.roll(digit, 3, axis=1),
        "smaller": np.pad(digit, 10)[::2, ::2],
        "another size": np.pad(digit, 2),
        "noisy ground": digit + 1,
    }
    for name, picture in not_in_form.items():
        assert not in_mnist_form(picture, 28, 28, 20), name


@pytest.mark.parametrize("window", [1, 3, 8 + 1, 27, 61])
def test_morphology_is_what_its_definitions_give(window):
    """Running maxima are the maxima over the edge-padded windows, along any axis of a picture or a stack of
    them; the stacked closing and opening are the closing of the picture and (negated) of its negative."""
    pictures = np.random.default_rng(window).uniform(0, 255, (2, 40, 50)).astype(np.float32)
    half = window // 2
    for axis in (1, 2):
        padded = np.pad(pictures, [(half, half) if each == axis else (0, 0) for each in range(3)], mode="edge")
        direct = np.lib.stride_tricks.sliding_window_view(padded, window, axis=axis).max(axis=-1)
        assert np.array_equal(running_max(pictures, window, axis), direct)
    closed, opened = closing_and_opening(pictures[0], window)
    assert np.array_equal(closed, closing(pictures[0], window))
    assert np.array_equal(255 - opened, closing(255 - pictures[0], window))
    mask = pictures[1] > 200
    assert all(np.array_equal(mine, numpy) for mine, numpy in zip(nonzero_pixels(mask), np.nonzero(mask)))


def test_percentiles_are_numpys(mnist_test_digits):
    """From the histogram of whole 8-bit values (an MNIST digit, one pixel, a mostly white canvas) or from numpy
    (fractional values), the same percentiles as np.percentile."""
    rng = np.random.default_rng(0)
    canvas = np.full((50, 60), 255, np.float32)
    canvas[20:30, 25:28] = rng.integers(0, 200, (10, 3))
    pictures = [mnist_test_digits[0][0].astype(np.float32), np.float32([[7]]), canvas, rng.uniform(0, 255, (9, 11))]
    for picture in pictures:
        for q in ([0.5, 50, 99.5], 99.9, 0, 100):
            np.testing.assert_allclose(percentiles(picture, q), np.percentile(picture, q), rtol=1e-6)


@pytest.mark.parametrize("name", UPLOADS)
def test_uploaded_pictures_become_the_mnist_digit(processor, mnist_test_digits, name):
    images, _ = mnist_test_digits
    pictures = [UPLOADS[name](upload(digit)) for digit in images]
    assert pictures[0].mode == name.split()[0]
    results = unnormalized(processor, pictures)
    # MNIST places the centre of mass to the nearest pixel, so a blurred enlargement may come back one pixel
    # off, which a thin digit feels: each digit must match up to a pixel, the sample as a whole exactly.
    assert np.mean([correlation(result, digit) for result, digit in zip(results, images)]) > 0.9
    assert min(correlation_up_to_a_pixel(result, digit) for result, digit in zip(results, images)) > 0.8


def test_faint_ink_comes_back_at_full_strength(processor, mnist_test_digits):
    digit = mnist_test_digits[0][0]
    pencil = (255 - 0.4 * digit).astype(np.uint8)  # light grey strokes on white
    np.testing.assert_allclose(unnormalized(processor, pencil), unnormalized(processor, digit), atol=0.02)


@pytest.mark.parametrize("width", [30, 36, 42, 54])
def test_strokes_of_any_width_on_a_plain_canvas_come_back_whole(processor, width):
    """A felt pen's stroke on a drawing app's canvas, however wide: the digit is the canvas's ink as it is (strokes
    about as wide as the window that measures the paper came back hollow, correlating 0.51-0.91). Strokes under
    MNIST's share of the digit (here under 30 pixels) are widened: the next test."""
    canvas = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(canvas).line([(150, 20), (50, 180)], fill=0, width=width)
    canvas = canvas.filter(ImageFilter.GaussianBlur(2))
    as_it_is = processor(255 - np.asarray(canvas), do_find_digit=False, return_tensors="np")["pixel_values"]
    assert correlation(unnormalized(processor, canvas), as_it_is[0, 0] * STD + MEAN) > 0.999


def stroke_width(digit: np.ndarray) -> float:
    """Twice the area of a 28x28 digit's strokes over their outline, in pixels."""
    strokes = np.squeeze(digit) > 0.25 * digit.max()
    padded = np.pad(strokes, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return 2 * strokes.sum() / (strokes & ~inner).sum()


@pytest.mark.parametrize("pen", [2, 4])
def test_thin_strokes_are_widened_to_mnists_width(processor, mnist_test_digits, pen):
    """A ballpoint's line on a big digit is 2-4% of the digit's size: at 20 pixels a faint hairline, which the
    model, trained on MNIST's 2-3 pixel strokes, misread (a thin 0 as an 8). It comes back as wide as MNIST's."""
    canvas = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(canvas).ellipse([(110, 40), (290, 360)], outline=0, width=pen)
    mnist_median = np.median([stroke_width(digit) for digit in mnist_test_digits[0]])
    assert stroke_width(unnormalized(processor, canvas)) >= 0.9 * mnist_median


def test_strokes_as_wide_as_mnists_are_left_as_they_are(processor, mnist_test_digits, monkeypatch):
    """Only strokes thinner than nearly all of MNIST's are widened: MNIST test digits uploaded at 224 px come
    back as they would without the widening, all but about their thinnest tenth (before, every stroke under
    MNIST's median was widened: 15 of these 32)."""
    uploads = [Image.fromarray(255 - digit).resize((224, 224), Image.Resampling.BICUBIC)
               for digit in mnist_test_digits[0]]
    processed = unnormalized(processor, uploads)
    monkeypatch.setattr(image_processing_mnist_vit, "with_mnist_strokes", lambda ink: ink)
    unwidened = unnormalized(processor, uploads)
    assert np.all(processed == unwidened, axis=(1, 2)).sum() >= 28


@pytest.mark.parametrize("edge", ["bottom", "left"])
def test_a_digit_drawn_up_to_the_canvas_edge_is_read(processor, mnist_test_digits, edge):
    """On a plain canvas nothing but ink reaches the border: a digit drawn or typed up to the edge is the digit
    (before, pieces touching the border were dropped as desk: 11 of these 20 came back blank)."""
    images, _ = mnist_test_digits
    pictures = []
    for digit in images[:10]:
        enlarged = np.asarray(Image.fromarray(255 - digit).resize((224, 224), Image.Resampling.BICUBIC))
        rows, columns = np.nonzero(enlarged < 128)
        canvas = np.full((300, 300), 255, np.uint8)
        if edge == "bottom":  # the lowest ink on the canvas's last row
            canvas[300 - rows.max() - 1 :, 40:264] = enlarged[: rows.max() + 1]
        else:
            canvas[40:264, : 224 - columns.min()] = enlarged[:, columns.min() :]
        pictures.append(canvas)
    results = unnormalized(processor, pictures)
    assert all(result.max() > 0.5 for result in results)  # none came back blank
    assert min(correlation_up_to_a_pixel(result, digit) for result, digit in zip(results, images)) > 0.8


def test_a_flat_digit_on_a_canvas_is_read(processor, mnist_test_digits):
    """A 2 drawn 2.2 times as wide as it is tall: on plain paper such a mark is a digit (it came back blank, as a
    bit of ruling would on a photo)."""
    two = Image.fromarray(255 - mnist_test_digits[0][1]).resize((220, 100), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (300, 300), 255)
    canvas.paste(two, (40, 100))
    result = unnormalized(processor, canvas)[0]
    top, left, height, width = ink_box(result > 0.05)
    assert width == 20 and 7 <= height <= 10


@pytest.mark.parametrize("width", [60, 80])
@pytest.mark.parametrize("ink", [30, 110])
def test_strokes_wider_than_the_paper_window_on_uneven_paper_come_back_whole(width, ink):
    """A felt pen's or a bold pencil's stroke on paper with a gradient and noise, wider than the window that measures
    the paper (37 pixels here): the paper's level inside it is read through the wide window. Grey strokes came
    back hollow (under 1% of the stroke at half strength or more), black ones with gaps."""
    mask = Image.new("L", (300, 300), 0)
    ImageDraw.Draw(mask).line([(200, 40), (90, 260)], fill=255, width=width)
    mask = np.asarray(mask.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32) / 255
    paper = np.linspace(180, 235, 300)[None] + np.random.default_rng(0).normal(0, 3, (300, 300))
    photo = np.clip(paper * (1 - mask) + ink * mask, 0, 255).astype(np.float32)
    found = find_digit(photo)
    assert (found[mask > 0.99] > 0.5 * found.max()).mean() > 0.95


def test_array_and_tensor_layouts_give_the_same_digit(processor, mnist_test_digits):
    digit = mnist_test_digits[0][0]
    as_float = digit.astype(np.float32) / 255
    inputs = {
        "HxW uint8": digit,
        "HxWx1 uint8": digit[..., None],
        "HxWx3 uint8": np.stack([digit] * 3, axis=-1),
        "3xHxW uint8": np.stack([digit] * 3),
        "HxW float32": as_float,
        "1xHxW float64": as_float[None].astype(np.float64),
        "HxWx4 float, opaque": np.dstack([as_float] * 3 + [np.ones_like(as_float)]),
        "tensor HxW uint8": torch.from_numpy(digit),
        "tensor 1xHxW float": torch.from_numpy(as_float)[None],
        "tensor 3xHxW uint8": torch.from_numpy(np.stack([digit] * 3)),
    }
    expected = pixels(processor, Image.fromarray(digit))
    for name, image in inputs.items():
        np.testing.assert_allclose(pixels(processor, image), expected, atol=1e-4, err_msg=name)


def test_lists_and_4d_arrays_are_batches(processor, mnist_test_digits):
    images, _ = mnist_test_digits
    mixed = [upload(images[0]), images[1], torch.from_numpy(images[2])]
    assert pixels(processor, mixed).shape == (3, 1, 28, 28)
    assert pixels(processor, images[:5, None]).shape == (5, 1, 28, 28)  # (B, C, H, W)
    assert pixels(processor, torch.from_numpy(images[:4, ..., None])).shape == (4, 1, 28, 28)  # (B, H, W, C)
    np.testing.assert_array_equal(pixels(processor, [images[3]]), pixels(processor, images[3]))


@pytest.mark.parametrize(
    "blank",
    [
        Image.new("L", (100, 80), 255),
        np.pad(np.full((300, 280), 255, np.uint8), ((0, 0), (20, 0))),  # a scanner's dark lid along one side
        Image.new("RGB", (28, 28)),
        Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
        np.full((28, 28), 0.5, dtype=np.float32),
    ],
    ids=["white", "dark edge", "black", "transparent", "grey"],
)
def test_blank_picture_gives_plain_background(processor, blank):
    out = pixels(processor, blank)
    assert out.shape == (1, 1, 28, 28)
    np.testing.assert_allclose(out, (0 - MEAN) / STD, rtol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("digit.png", "Expected a PIL image, a numpy array or a torch tensor .* got str"),
        ({"pixel_values": np.zeros((28, 28))}, "got dict"),
        (None, "got NoneType"),
        ([], "empty list of images"),
        (np.zeros((0, 28), dtype=np.uint8), r"empty image of shape \(0, 28\)"),
        (np.full((28, 28), np.nan, dtype=np.float32), "NaN"),
        (np.zeros(28, dtype=np.uint8), r"Expected an image of shape \(H, W\), \(H, W, C\) or \(C, H, W\)"),
        (np.zeros((2, 1, 1, 28, 28), dtype=np.uint8), "Expected an image of shape"),
        (np.zeros((28, 28, 7), dtype=np.uint8), "Cannot find the channels"),
        (np.full((28, 28), 2.0), r"Float images must hold values in \[0, 1\]"),
        (np.full((28, 28), 300), r"Integer images must hold values in \[0, 255\]"),
        (np.array([["a"]]), "numeric type"),
    ],
    ids=["str", "dict", "None", "empty list", "0-size", "NaN", "1-D", "5-D"]
    + ["7 channels", "float>1", "int>255", "strings"],
)
def test_bad_input_raises_a_clear_value_error(processor, bad, message):
    with pytest.raises(ValueError, match=message):
        processor(bad, return_tensors="pt")


def test_save_and_load_keep_the_settings(tmp_path, mnist_test_digits):
    processor = MnistViTImageProcessor(
        digit_size=16, do_center=False, num_channels=3, image_mean=[0.5], image_std=[0.5]
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["digit_size"] == 16 and saved["do_center"] is False and saved["num_channels"] == 3
    assert saved["auto_map"]["AutoImageProcessor"] == "image_processing_mnist_vit.MnistViTImageProcessor"
    assert (tmp_path / "image_processing_mnist_vit.py").exists()  # copied as remote code

    picture = upload(mnist_test_digits[0][0])
    for loaded in [MnistViTImageProcessor.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)]:
        assert isinstance(loaded, MnistViTImageProcessor)
        assert loaded.to_dict() == processor.to_dict()
        np.testing.assert_array_equal(pixels(loaded, picture), pixels(processor, picture))


def test_call_arguments_override_the_settings(processor, mnist_test_digits):
    digit = mnist_test_digits[0][0]
    out = pixels(processor, digit, digit_size=14, num_channels=3, do_normalize=False)
    assert out.shape == (1, 3, 28, 28)
    assert max(ink_box(out[0, 0])[2:]) == 14


def test_with_every_step_off_the_picture_is_kept_as_it_is(mnist_test_digits):
    digit = mnist_test_digits[0][0]
    steps_off = dict(do_crop=False, do_resize=False, do_center=False, do_rescale=False, do_normalize=False)
    kept = pixels(MnistViTImageProcessor(do_find_digit=False, **steps_off), 255 - digit)
    inverted = pixels(MnistViTImageProcessor(do_find_digit=True, **steps_off), 255 - digit)
    np.testing.assert_array_equal(kept[0, 0], 255 - digit)
    np.testing.assert_allclose(inverted[0, 0], digit, atol=1e-3)


def test_without_centre_of_mass_the_ink_box_is_centred(mnist_test_digits):
    images, _ = mnist_test_digits
    by_mass = pixels(MnistViTImageProcessor(do_normalize=False), list(images))[:, 0]
    by_box = pixels(MnistViTImageProcessor(do_normalize=False, do_center=False), list(images))[:, 0]
    rows, cols = np.arange(28), np.arange(28)
    for mass_centred, box_centred in zip(by_mass, by_box):
        assert abs(mass_centred.sum(axis=1) @ rows / mass_centred.sum() - 14) <= 0.5
        assert abs(mass_centred.sum(axis=0) @ cols / mass_centred.sum() - 14) <= 0.5
        top, left, height, width = ink_box(box_centred)
        assert (top, left) == ((28 - height) // 2, (28 - width) // 2)
    assert not np.array_equal(by_mass, by_box)


def test_crop_and_resize_set_the_digit_size(mnist_test_digits):
    digit = mnist_test_digits[0][0]
    corner = np.zeros((56, 56), dtype=np.uint8)
    corner[:28, 28:] = digit  # the digit in a corner of a canvas twice its size
    small = np.zeros((40, 40), dtype=np.uint8)
    small[5:19, 20:34] = np.asarray(Image.fromarray(digit).resize((14, 14), Image.Resampling.BOX))

    def digit_size(picture, **steps) -> int:
        out = pixels(MnistViTImageProcessor(do_normalize=False, **steps), picture)[0, 0]
        return max(ink_box(out > 0.05)[2:])  # above resampling's faint fringe

    assert digit_size(corner) == 20
    assert 8 <= digit_size(corner, do_crop=False) <= 12  # the whole canvas is scaled to 20, the digit to about 10
    assert digit_size(small) == 20
    assert digit_size(small, do_resize=False) == max(ink_box(small > 0.05 * 255)[2:])


def test_rescale_normalize_and_channels(mnist_test_digits):
    digit = mnist_test_digits[0][0]
    raw = pixels(MnistViTImageProcessor(do_rescale=False, do_normalize=False), digit)
    unit = pixels(MnistViTImageProcessor(do_normalize=False), digit)
    rgb = pixels(MnistViTImageProcessor(num_channels=3), digit)
    assert raw.max() == pytest.approx(255) and unit.max() == pytest.approx(1)
    assert rgb.shape == (1, 3, 28, 28)
    np.testing.assert_allclose(rgb[:, 1:], rgb[:, :1].repeat(2, axis=1))
    np.testing.assert_allclose(rgb[:, :1], (unit - MEAN) / STD, rtol=1e-5)


def test_image_classification_pipeline_uses_the_processor(mnist_test_digits):
    model = MnistViTForImageClassification(MnistViTConfig()).eval()
    classify = pipeline("image-classification", model=model, image_processor=MnistViTImageProcessor())
    predictions = classify(upload(mnist_test_digits[0][0]), top_k=10)
    assert sorted(p["label"] for p in predictions) == [str(digit) for digit in range(10)]
