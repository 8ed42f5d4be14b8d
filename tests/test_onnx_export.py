"""mnist_vit.onnx_export: the plain-ViT root as ONNX files for transformers.js, checked against torch."""

import shutil

import numpy as np
import onnxruntime
import pytest
import torch
from transformers import ViTForImageClassification, ViTImageProcessorPil

from conftest import TEST_DIGITS
from mnist_vit.onnx_export import check_onnx, stage_onnx
from mnist_vit.errors import UserError

pytestmark = pytest.mark.slow  # each module run exports the root to ONNX: seconds


def onnx_logits(path, pixel_values: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"pixel_values": pixel_values.numpy()})[0]


def with_overconfident_head(source, destination) -> None:
    """A copy of the root whose logits are 10,000 times larger: float32 rounding then moves them by far more than
    1e-4, so its ONNX file disagrees with torch for real."""
    vit = ViTForImageClassification.from_pretrained(source)
    with torch.no_grad():
        vit.classifier.weight.mul_(1e4)
        vit.classifier.bias.mul_(1e4)
    vit.save_pretrained(destination)
    ViTImageProcessorPil.from_pretrained(source).save_pretrained(destination)


def test_onnx_files_predict_as_torch(staged, test_pictures):
    vit = ViTForImageClassification.from_pretrained(staged).eval()
    pixel_values = ViTImageProcessorPil.from_pretrained(staged)(test_pictures, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = vit(pixel_values=pixel_values).logits.numpy()

    fp32 = onnx_logits(staged / "onnx" / "model.onnx", pixel_values)
    assert fp32.shape == (TEST_DIGITS, 10)
    assert np.abs(fp32 - expected).max() < 1e-4
    single = onnx_logits(staged / "onnx" / "model.onnx", pixel_values[:1])  # the batch size is free
    assert np.abs(single - expected[:1]).max() < 1e-4

    quantized = onnx_logits(staged / "onnx" / "model_quantized.onnx", pixel_values)
    assert (quantized.argmax(-1) == expected.argmax(-1)).mean() >= 0.995
    assert (staged / "onnx" / "model_quantized.onnx").stat().st_size < (staged / "onnx" / "model.onnx").stat().st_size / 2


def test_preprocessor_config_has_3_value_mean_and_std(staged):
    """transformers.js reads one value per channel."""
    processor = ViTImageProcessorPil.from_pretrained(staged)
    assert len(processor.image_mean) == 3 and len(processor.image_std) == 3


def test_export_refuses_a_model_whose_onnx_disagrees(root_folder, test_pictures, tmp_path):
    with_overconfident_head(root_folder, tmp_path)
    files_before = sorted(path.name for path in tmp_path.iterdir())
    with pytest.raises(UserError, match=r"differ from torch's by up to [0-9.e-]+ on 100 digits") as refusal:
        stage_onnx(tmp_path, test_pictures[:100])
    assert "\n" not in str(refusal.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == files_before  # no onnx/ left behind


def test_check_refuses_onnx_files_of_another_model(staged, test_pictures, tmp_path):
    assert check_onnx(staged, test_pictures[:100]).failure() is None
    with_overconfident_head(staged, tmp_path)  # the same ONNX files beside other weights
    shutil.copytree(staged / "onnx", tmp_path / "onnx")
    with pytest.raises(UserError, match=r"The ONNX files in .* disagree with its torch model: the fp32 ONNX logits"):
        check_onnx(tmp_path, test_pictures[:100])


def test_staging_keeps_an_existing_onnx_folder(root_folder, test_pictures, tmp_path):
    shutil.copytree(root_folder, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("onnx"))
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"earlier work")
    with pytest.raises(UserError, match="exists already"):
        stage_onnx(tmp_path, test_pictures[:10])
    assert (tmp_path / "onnx" / "model.onnx").read_bytes() == b"earlier work"
