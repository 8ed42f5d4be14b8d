"""The shipped checkpoint is the original architecture, small, carries the package's code, and is as accurate as
its report says."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MNIST_DIR, REPO_ROOT
import mnist_vit
from mnist_vit import MnistViTConfig, MnistViTForImageClassification, MnistViTImageProcessor
from mnist_vit.data import read_idx

ARCHITECTURE = ["image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
                "num_attention_heads", "intermediate_size"]


CHECKPOINTS = [REPO_ROOT / "checkpoints" / "mnist-vit", REPO_ROOT / "checkpoints" / "mnist-vit-root"]


@pytest.mark.parametrize("shipped_model", CHECKPOINTS, ids=lambda path: path.name)
def test_shipped_checkpoint_is_the_original_model_and_under_4_mb(shipped_model):
    config = MnistViTConfig.from_pretrained(shipped_model)
    default = MnistViTConfig()
    assert {name: getattr(config, name) for name in ARCHITECTURE} == {name: getattr(default, name) for name in ARCHITECTURE}
    size = sum(path.stat().st_size for path in shipped_model.iterdir())
    assert size <= 4 * 1024 * 1024, f"{size} bytes"


@pytest.mark.parametrize("shipped_model", CHECKPOINTS, ids=lambda path: path.name)
def test_shipped_checkpoint_carries_the_packages_code(shipped_model):
    """The code a Hub repo runs with trust_remote_code is the package's own, byte for byte."""
    package = Path(mnist_vit.__file__).parent
    code_files = sorted(path.name for path in shipped_model.glob("*.py"))
    assert code_files == ["configuration_mnist_vit.py", "image_processing_mnist_vit.py", "modeling_mnist_vit.py"]
    stale = [name for name in code_files if (shipped_model / name).read_bytes() != (package / name).read_bytes()]
    assert not stale, f"{', '.join(stale)} in {shipped_model} differ from the package's: copy them from {package}."


@pytest.mark.slow
def test_shipped_checkpoint_reaches_its_reported_test_accuracy_through_its_processor(shipped_model):
    """All 10,000 MNIST test digits through the image processor, as predict.py reads pictures."""
    report = json.loads((shipped_model / "test_results.json").read_text())
    confusion = np.array(report["test_confusion_matrix"])
    assert confusion.sum() == 10_000
    assert report["test_accuracy"] == np.trace(confusion) / confusion.sum()

    model = MnistViTForImageClassification.from_pretrained(shipped_model).eval()
    processor = MnistViTImageProcessor.from_pretrained(shipped_model)
    pixel_values = processor(list(read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")), return_tensors="pt").pixel_values
    labels = torch.from_numpy(read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    with torch.no_grad():
        predictions = torch.cat([model(pixel_values=batch).logits.argmax(-1) for batch in pixel_values.split(512)])
    accuracy = (predictions == labels).float().mean().item()

    assert accuracy >= 0.995
    assert abs(accuracy - report["test_accuracy"]) <= 1e-4  # one digit of slack for float summation order
