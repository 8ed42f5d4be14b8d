"""mnist_vit.export: the trained model as a plain transformers ViT that takes RGB."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTForImageClassification, pipeline

from mnist_vit import MnistViTConfig, MnistViTForImageClassification, MnistViTImageProcessor
from mnist_vit.export import export_to_vit, load_vit_export

TOLERANCE = 1e-5  # on logits, as the README says


def unchanged_pixels(num_channels: int = 1) -> MnistViTImageProcessor:
    """Our processor with the MNIST steps off: gray conversion and normalisation only, as the export does.

    With the steps on, re-centring moves a few MNIST digits by a pixel; the export never moves anything.
    """
    steps_off = {"do_find_digit": False, "do_crop": False, "do_resize": False, "do_center": False}
    return MnistViTImageProcessor(**steps_off, num_channels=num_channels)


def coloured(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """MNIST digits as RGB pictures: ink of a random colour on a random dark background, uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    ink = rng.integers(128, 256, size=(len(images), 1, 1, 3))
    background = rng.integers(0, 64, size=(len(images), 1, 1, 3))
    alpha = images[..., None] / 255
    return np.round(background * (1 - alpha) + ink * alpha).astype(np.uint8)


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture(scope="module")
def trained(trained_run):
    model = MnistViTForImageClassification.from_pretrained(trained_run).eval()
    return model, MnistViTImageProcessor.from_pretrained(trained_run)


@pytest.fixture(scope="module")
def exported(trained):
    return export_to_vit(*trained)


@pytest.fixture(scope="module")
def export_dir(exported, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    vit, vit_processor = exported
    vit.save_pretrained(folder)
    vit_processor.save_pretrained(folder)
    return folder


@pytest.mark.slow  # a real train.py run (the trained_run fixture)
def test_export_predicts_as_the_package_on_gray_digits(trained, exported, mnist_test_digits):
    (model, _), (vit, vit_processor) = trained, exported
    images, _ = mnist_test_digits
    expected = logits(model, unchanged_pixels()(list(images), return_tensors="pt"))
    # PIL "L" pictures: the export's processor converts them to RGB, as the pipeline does.
    actual = logits(vit, vit_processor([Image.fromarray(image) for image in images], return_tensors="pt"))
    assert (actual - expected).abs().max() < TOLERANCE
    assert torch.equal(actual.argmax(-1), expected.argmax(-1))


@pytest.mark.slow  # a real train.py run (the trained_run fixture)
def test_export_predicts_as_the_package_on_rgb_digits(trained, exported, mnist_test_digits):
    (model, _), (vit, vit_processor) = trained, exported
    pictures = coloured(mnist_test_digits[0])
    expected = logits(model, unchanged_pixels()(list(pictures), return_tensors="pt"))  # luma to gray, in float
    actual = logits(vit, vit_processor([Image.fromarray(picture) for picture in pictures], return_tensors="pt"))
    assert (actual - expected).abs().max() < TOLERANCE


def test_a_3_channel_model_exports_too(mnist_test_digits):
    """Our 3-channel model sees gray repeated on each channel; the export must sum those channels' weights."""
    torch.manual_seed(0)
    model = MnistViTForImageClassification(MnistViTConfig(num_channels=3)).eval()
    vit, vit_processor = export_to_vit(model, MnistViTImageProcessor(num_channels=3))
    pictures = coloured(mnist_test_digits[0][:8], seed=1)
    expected = logits(model, unchanged_pixels(num_channels=3)(list(pictures), return_tensors="pt"))
    actual = logits(vit, vit_processor([Image.fromarray(picture) for picture in pictures], return_tensors="pt"))
    assert (actual - expected).abs().max() < TOLERANCE


@pytest.mark.slow  # a real train.py run (the trained_run fixture)
def test_export_saves_a_plain_vit_with_a_stock_processor(export_dir, exported, mnist_test_digits):
    assert sorted(path.name for path in export_dir.iterdir()) == [
        "config.json", "model.safetensors", "preprocessor_config.json",
    ]
    config = json.loads((export_dir / "config.json").read_text())
    assert config["model_type"] == "vit" and config["architectures"] == ["ViTForImageClassification"]
    assert config["num_channels"] == 3 and "auto_map" not in config
    processor_config = json.loads((export_dir / "preprocessor_config.json").read_text())
    assert processor_config["image_processor_type"] == "ViTImageProcessor"
    assert processor_config["size"] == {"height": 28, "width": 28}
    assert processor_config["image_mean"] == [0.1307] * 3 and processor_config["image_std"] == [0.3081] * 3

    vit, vit_processor = exported
    inputs = vit_processor([Image.fromarray(image) for image in mnist_test_digits[0]], return_tensors="pt")
    reloaded = ViTForImageClassification.from_pretrained(export_dir).eval()
    assert torch.allclose(logits(reloaded, inputs), logits(vit, inputs), atol=1e-6)


@pytest.mark.slow  # a real train.py run (the trained_run fixture)
def test_pipeline_serves_the_export_with_the_package_predictions(export_dir, trained, mnist_test_digits):
    model, _ = trained
    images, _ = mnist_test_digits
    classifier = pipeline("image-classification", model=str(export_dir))
    labels = [result[0]["label"] for result in classifier([Image.fromarray(image) for image in images], top_k=1)]
    expected = logits(model, unchanged_pixels()(list(images), return_tensors="pt")).argmax(-1)
    assert labels == [model.config.id2label[int(index)] for index in expected]


@pytest.mark.slow  # a real train.py run (the trained_run fixture)
def test_load_vit_export_reads_it_back_into_our_class(export_dir, trained, mnist_test_digits):
    model, _ = trained
    reloaded = load_vit_export(export_dir).eval()
    assert isinstance(reloaded, MnistViTForImageClassification)
    assert reloaded.config.model_type == "mnist_vit" and reloaded.config.num_channels == 3
    gray = unchanged_pixels()(list(mnist_test_digits[0]), return_tensors="pt")["pixel_values"]
    rgb_of_gray = {"pixel_values": gray.repeat(1, 3, 1, 1)}  # luma of equal channels is that gray
    assert (logits(reloaded, rgb_of_gray) - logits(model, {"pixel_values": gray})).abs().max() < TOLERANCE


def test_export_refuses_different_normalisations_per_channel():
    model = MnistViTForImageClassification(MnistViTConfig(num_channels=3))
    processor = MnistViTImageProcessor(num_channels=3, image_mean=[0.1, 0.2, 0.3], image_std=[0.3] * 3)
    with pytest.raises(ValueError, match="one image_mean for all channels"):
        export_to_vit(model, processor)
