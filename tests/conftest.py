import os
from pathlib import Path

import numpy as np
import pytest

from mnist_vit.data import read_idx

MNIST_DIR = Path(os.environ.get("MNIST_DIR", Path(__file__).resolve().parents[2] / "shared" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The first 32 MNIST test digits: images uint8 (32, 28, 28) and labels uint8 (32,)."""
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:32]
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:32]
    return images, labels


@pytest.fixture(scope="session")
def mnist_train_digits() -> tuple[np.ndarray, np.ndarray]:
    """The first 64 MNIST training digits and their labels."""
    images = read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")[:64]
    labels = read_idx(MNIST_DIR / "train-labels-idx1-ubyte.gz")[:64]
    return images, labels
