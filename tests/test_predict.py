"""predict.py on real picture files made the way people make them, and the inference module under it."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import REPO_ROOT, ink_on_transparency
from mnist_vit.errors import UserError
from mnist_vit.inference import MAX_SIDE, NOT_ITS_CONFIG, DigitClassifier, ImageReadError, attention_picture, find_images, read_image


def run_predict(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "predict.py"), *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


# --- MNIST test digits (28x28, white ink on black) made to look like uploads --------------------------------


def enlarge(digit: np.ndarray, factor: int) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((28 * factor, 28 * factor), Image.Resampling.BICUBIC))


def paint(ink: np.ndarray, ink_color, paper_color) -> Image.Image:
    """Ink of one colour on paper of another, `ink` (0-255) giving how much ink covers each pixel."""
    cover = ink[..., None] / 255
    return Image.fromarray((np.asarray(paper_color) * (1 - cover) + np.asarray(ink_color) * cover).astype(np.uint8))


def small_and_off_centre(digit: np.ndarray) -> Image.Image:
    """A 56-pixel grey digit in the top right of a 480x360 light-grey scan."""
    scan = np.full((360, 480), 235, dtype=np.uint8)
    scan[40:96, 330:386] = 235 - enlarge(digit, 2).astype(np.uint16) * 200 // 255
    return Image.fromarray(scan)


def photo_of_paper(digit: np.ndarray) -> Image.Image:
    """Pencil on cream paper, lit a little unevenly, with sensor noise."""
    paper = np.linspace(205, 230, 336)[None, :, None] * np.array([1.0, 0.97, 0.9])  # brighter to the right
    photo = np.asarray(paint(enlarge(digit, 12), (50, 50, 70), np.broadcast_to(paper, (336, 336, 3))), dtype=float)
    photo += np.random.default_rng(0).normal(0, 4, photo.shape)
    return Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))


UPLOAD_STYLES = {  # file name ending -> how to draw a digit that way
    "black-on-white.png": lambda digit: paint(enlarge(digit, 8), (0, 0, 0), (255, 255, 255)).convert("L"),
    "white-on-black.jpg": lambda digit: Image.fromarray(enlarge(digit, 5)).convert("RGB"),
    "blue-on-yellow.webp": lambda digit: paint(enlarge(digit, 6), (20, 30, 140), (250, 230, 120)),
    "small-off-centre.bmp": small_and_off_centre,
    "large.gif": lambda digit: paint(enlarge(digit, 20), (0, 0, 0), (255, 255, 255)).convert("P"),
    "canvas-export.png": lambda digit: ink_on_transparency(enlarge(digit, 8)),
    "photo-of-paper.jpg": photo_of_paper,
}


@pytest.fixture(scope="module")
def uploads(tmp_path_factory, mnist_test_digits) -> tuple[Path, dict[Path, str]]:
    """A folder of 10 MNIST test digits in the upload styles (the last 3 in a subfolder), plus two bad files
    among them: text named .png and an empty .png. Returns the folder and {picture path: true label}."""
    folder = tmp_path_factory.mktemp("uploads") / "digits"
    (folder / "more").mkdir(parents=True)
    images, labels = mnist_test_digits
    styles = list(UPLOAD_STYLES)
    truth = {}
    for index in range(10):
        style = styles[index % len(styles)]
        path = (folder / "more" if index >= 7 else folder) / f"{index:02d}-{style}"
        UPLOAD_STYLES[style](images[index]).save(path)
        truth[path] = str(labels[index])
    (folder / "03b-not-a-picture.png").write_text("a shopping list, not a picture")
    (folder / "05b-empty.png").write_bytes(b"")
    return folder, truth


@pytest.fixture(scope="module")
def classifier(shipped_model) -> DigitClassifier:
    return DigitClassifier.from_pretrained(shipped_model)


# --- predict.py, as people run it ---------------------------------------------------------------------------


@pytest.mark.slow  # a fresh Python process: seconds
def test_folder_with_bad_files_reports_them_and_reads_the_rest(uploads):
    folder, truth = uploads
    result = run_predict(str(folder), "missing.png", "--json", cwd=folder.parent)
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]

    bad_files = [folder / "03b-not-a-picture.png", folder / "05b-empty.png"]
    expected_order = sorted([*truth, *bad_files]) + [Path("missing.png")]
    assert [line["file"] for line in lines] == [str(path) for path in expected_order]
    errors = {Path(line["file"]).name: line["error"] for line in lines if "error" in line}
    assert errors == {
        "03b-not-a-picture.png": "This is not a picture that can be read (PNG, JPEG, WebP, BMP, GIF, TIFF or another format Pillow reads expected).",
        "05b-empty.png": "The file is empty.",
        "missing.png": "No such file.",
    }
    assert "3 of 13 pictures could not be classified." in result.stderr

    predictions = [line for line in lines if "error" not in line]
    for line in predictions:
        assert set(line) == {"file", "label", "score", "top_k"}
        scores = [entry["score"] for entry in line["top_k"]]
        assert len(line["top_k"]) == 3 and scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
        assert line["top_k"][0] == {"label": line["label"], "score": line["score"]}
    right = [line["label"] == truth[Path(line["file"])] for line in predictions]
    assert sum(right) >= 9, f"only {sum(right)} of 10 digits read right: {predictions}"


@pytest.mark.slow
def test_glob_patterns_and_text_output(uploads):
    folder, truth = uploads
    # quoted, as on Windows or in scripts: predict.py expands the pattern itself
    result = run_predict("digits/0[0-2]-*", "digits/more", "--top_k", "2", cwd=folder.parent)
    assert result.returncode == 0, result.stderr
    line_shape = re.compile(r"^(\S+): (\d) \(\d+\.\d%\)  top 2: \2 \d+\.\d%  \d \d+\.\d%$")
    matches = [line_shape.match(line) for line in result.stdout.splitlines()]
    assert all(matches), result.stdout
    expected = ["00-black-on-white.png", "01-white-on-black.jpg", "02-blue-on-yellow.webp"]
    expected += ["more/07-black-on-white.png", "more/08-white-on-black.jpg", "more/09-blue-on-yellow.webp"]
    assert [match[1] for match in matches] == [f"digits/{name}" for name in expected]


# --- the inference module ----------------------------------------------------------------------------------


def test_find_images_keeps_order_and_what_matches_nothing(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", "sub/c.webp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "empty-folder").mkdir()
    arguments = [tmp_path / "notes.txt", tmp_path, tmp_path / "*.png", tmp_path / "*.gif", tmp_path / "empty-folder"]
    assert find_images([str(argument) for argument in arguments]) == [
        tmp_path / "notes.txt",  # named files are tried whatever their ending
        tmp_path / "a.JPG",
        tmp_path / "b.png",
        tmp_path / "sub" / "c.webp",
        tmp_path / "b.png",
        tmp_path / "*.gif",  # kept, so that reading it says nothing matched
        tmp_path / "empty-folder",
    ]
    with pytest.raises(ImageReadError, match="No file matches this pattern."):
        read_image(tmp_path / "*.gif")
    with pytest.raises(ImageReadError, match=re.escape("This folder holds no pictures (PNG, JPEG, WebP, BMP, GIF, TIFF or another format Pillow reads).")):
        read_image(tmp_path / "empty-folder")


def test_a_picture_pillow_warns_of_is_read_reduced_without_the_warning(tmp_path):
    Image.new("1", (10_000, 9_000), 1).save(tmp_path / "huge.png")  # 90 megapixels: Pillow warns above 89
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the test, not just print
        assert max(read_image(tmp_path / "huge.png").size) <= MAX_SIDE


def test_read_image_decodes_fully_and_turns_phone_photos_upright(tmp_path):
    sideways = Image.new("L", (40, 20), 255)
    exif = sideways.getexif()
    exif[0x0112] = 6  # EXIF Orientation: the camera was turned 90 degrees
    sideways.save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").size == (20, 40)

    jpeg = (tmp_path / "phone.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageReadError, match="The picture cannot be decoded"):
        read_image(tmp_path / "truncated.jpg")


def test_blank_pictures_get_no_prediction(classifier, mnist_test_digits):
    images, labels = mnist_test_digits
    blank = Image.new("RGB", (100, 100), (240, 240, 255))
    predictions = classifier.predict([Image.fromarray(images[0]), blank], top_k=2)
    assert predictions[0].label == str(labels[0]) and len(predictions[0].top_k) == 2
    assert predictions[1] is None
    assert classifier.explain(blank) is None


def test_explain_shows_the_digit_and_attention_over_its_patches(classifier, mnist_test_digits):
    images, labels = mnist_test_digits
    explanation = classifier.explain(Image.fromarray(images[2]))
    assert explanation.prediction.label == str(labels[2])
    assert explanation.digit.shape == (28, 28) and 0 <= explanation.digit.min() < explanation.digit.max() <= 1
    assert np.corrcoef(explanation.digit.ravel(), images[2].ravel())[0, 1] > 0.99  # MNIST comes back as it was
    assert explanation.attention.shape == (4, 4) and (explanation.attention > 0).all()
    assert explanation.attention.sum() == pytest.approx(1)
    picture = attention_picture(explanation)
    assert picture.mode == "RGB" and picture.size == (280, 280)


# --- bad input: every failure one line, nothing else lost ---------------------------------------------------


def damaged_pictures() -> dict[str, bytes]:
    """Files that Pillow opens and then fails on, each with an exception type of its own, not only `OSError`."""
    def encoded(format: str, **options) -> bytes:
        buffer = io.BytesIO()
        Image.new("L", (60, 40), 200).save(buffer, format=format, **options)
        return buffer.getvalue()

    oversized_text = PngImagePlugin.PngInfo()
    oversized_text.add_text("comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    bmp = bytearray(encoded("BMP"))
    bmp[14:18] = (7).to_bytes(4, "little")  # a header size no BMP version has
    pgm, tiff = encoded("PPM"), encoded("TIFF")
    return {
        "oversized-text.png": encoded("PNG", pnginfo=oversized_text),  # ValueError
        "bad-header.bmp": bytes(bmp),  # OSError
        "truncated-header.pgm": pgm[:5],  # ValueError
        "truncated.tif": tiff[: len(tiff) * 2 // 3],  # OSError
    }


@pytest.mark.slow
def test_damaged_files_are_error_lines_and_the_others_are_read(tmp_path, mnist_test_digits):
    images, labels = mnist_test_digits
    for name, data in damaged_pictures().items():
        (tmp_path / name).write_bytes(data)
    Image.fromarray(images[0]).save(tmp_path / "z-digit.png")
    result = run_predict(*sorted(str(path) for path in tmp_path.iterdir()), "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    errors = {Path(line["file"]).name: line["error"] for line in lines if "error" in line}
    assert sorted(errors) == sorted(damaged_pictures())
    assert all(error.startswith("The picture cannot be decoded (") for error in errors.values()), errors
    assert lines[-1]["label"] == str(labels[0])


@pytest.mark.slow
def test_file_names_with_control_characters_stay_one_line(tmp_path, mnist_test_digits):
    images, labels = mnist_test_digits
    name = "new\nline \x1b[31mred\x1b[0m.png"
    Image.fromarray(images[0]).save(tmp_path / name)
    (tmp_path / "tab\there.png").write_text("not a picture")
    result = run_predict(str(tmp_path), cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith(f"{tmp_path}/new\\nline \\x1b[31mred\\x1b[0m.png: {labels[0]} (")
    assert lines[1].startswith(f"{tmp_path}/tab\\there.png: error: This is not a picture")


@pytest.mark.slow
def test_a_folder_that_cannot_be_read_is_reported(tmp_path, mnist_test_digits):
    images, labels = mnist_test_digits
    folder = tmp_path / "photos"
    (folder / "locked").mkdir(parents=True)
    Image.fromarray(images[0]).save(folder / "a.png")
    Image.fromarray(images[1]).save(folder / "locked" / "b.png")
    (folder / "locked").chmod(0)
    command = [sys.executable, str(REPO_ROOT / "predict.py"), str(folder)]
    if os.geteuid() == 0:  # root reads any folder: drop the capabilities that let it
        command = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search", *command]
    try:
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        (folder / "locked").chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[1:] == [f"{folder / 'locked'}: error: This folder cannot be read: Permission denied."]
    assert result.stdout.startswith(f"{folder / 'a.png'}: {labels[0]} (")


def broken_models(shipped_model: Path, folder: Path) -> dict[str, str]:
    """{model path: what the error must say}, each a copy of the shipped model broken one way."""
    def copy(name: str) -> Path:
        return Path(shutil.copytree(shipped_model, folder / name))

    truncated, empty, wrong_size, wrong_depth = copy("truncated"), copy("empty"), copy("wrong-size"), copy("wrong-depth")
    no_config, no_processor, text_model = copy("no-config"), copy("no-processor"), copy("text-model")
    (no_config / "config.json").unlink()
    (no_processor / "preprocessor_config.json").unlink()
    (text_model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    weights = (shipped_model / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (empty / "model.safetensors").write_bytes(b"")
    for model, change in ((wrong_size, {"hidden_size": 64, "intermediate_size": 256}), (wrong_depth, {"num_hidden_layers": 6})):
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, **change}))
    return {
        str(truncated): f"The weights in {truncated} are damaged",
        str(empty): f"The weights in {empty} are damaged",
        str(wrong_size): f"The weights in {wrong_size} do not fit its config.json",
        str(wrong_depth): f"The weights in {wrong_depth} do not fit its config.json",
        str(truncated / "model.safetensors"): f"{truncated / 'model.safetensors'} is a file: pass the model's folder",
        str(folder / "no" / "such" / "model"): f"There is no folder {folder / 'no' / 'such' / 'model'}",
        str(no_config): f"{no_config} has no config.json, so it holds no model",
        str(no_processor): f"{no_processor} has no preprocessor_config.json, the image processor",
        str(text_model): f"{text_model} holds a model that does not classify images",
    }


def test_a_model_that_cannot_be_loaded_is_one_sentence_naming_it(shipped_model, tmp_path):
    for model, message in broken_models(shipped_model, tmp_path).items():
        with pytest.raises(UserError) as refusal:
            DigitClassifier.from_pretrained(model)
        assert str(refusal.value).startswith(f"cannot load the model from {model}: {message}"), str(refusal.value)


@pytest.mark.slow  # a fresh Python process: seconds
def test_predict_prints_only_that_sentence(shipped_model, tmp_path, mnist_test_digits):
    """A config of another depth is the case where transformers would also print its loading report."""
    Image.fromarray(mnist_test_digits[0][0]).save(tmp_path / "digit.png")
    model = next(path for path in broken_models(shipped_model, tmp_path) if path.endswith("wrong-depth"))
    result = run_predict("digit.png", "--model", model, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr == f"error: cannot load the model from {model}: {NOT_ITS_CONFIG.format(path=model)}\n"


def test_predict_uses_sdpa_and_explain_switches_to_eager(shipped_model, mnist_test_digits):
    classifier = DigitClassifier.from_pretrained(shipped_model)
    assert classifier.model.config._attn_implementation == "sdpa"
    digit = Image.fromarray(mnist_test_digits[0][3])
    prediction = classifier.predict([digit])[0]
    explanation = classifier.explain(digit)
    assert classifier.model.config._attn_implementation == "eager"
    assert explanation.prediction.label == prediction.label
    assert explanation.prediction.score == pytest.approx(prediction.score, abs=1e-5)


def test_large_pictures_are_decoded_reduced_and_upright(tmp_path):
    photo = Image.new("RGB", (6000, 4000), (200, 190, 180))
    exif = photo.getexif()
    exif[0x0112] = 6  # EXIF Orientation: stored sideways
    photo.save(tmp_path / "photo.jpg", exif=exif, quality=80)
    decoded = read_image(tmp_path / "photo.jpg")
    assert decoded.size == (1000, 1500)  # decoded at 1/4 scale (1/8 would be under 1024 px), then turned upright
    Image.new("L", (5000, 3000), 255).save(tmp_path / "scan.png")
    assert max(read_image(tmp_path / "scan.png").size) <= 2048
    Image.new("L", (900, 700), 255).save(tmp_path / "small.png")
    assert read_image(tmp_path / "small.png").size == (900, 700)
