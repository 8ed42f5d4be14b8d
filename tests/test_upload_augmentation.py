"""mnist_vit.upload_augmentation: MNIST digits made to look like uploads after the stock ViT processor."""

import numpy as np
import pytest
import torch

from conftest import MNIST_DIR
from mnist_vit import data
from mnist_vit.upload_augmentation import Draws, MNIST_SHARE, as_uploads, placed

BATCH = 400


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def brightness() -> torch.Tensor:
    """The first 400 MNIST training digits, (B, 1, 28, 28) in [0, 1]."""
    digits = data.read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")[:BATCH]
    return torch.from_numpy(digits.copy()).float().div(255).unsqueeze(1)


def ink_box(picture: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(picture.max(axis=1) > 0.2)[0], np.nonzero(picture.max(axis=0) > 0.2)[0]
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def test_keeps_shape_and_range_and_repeats_with_a_seed(brightness):
    uploads = as_uploads(brightness, generator=seeded(0))
    assert uploads.shape == brightness.shape and uploads.dtype == brightness.dtype
    assert uploads.min() >= 0 and uploads.max() <= 1
    torch.testing.assert_close(as_uploads(brightness, generator=seeded(0)), uploads, atol=0, rtol=0)
    assert not torch.equal(as_uploads(brightness, generator=seeded(1)), uploads)


def test_a_share_stays_mnist_and_the_rest_has_both_polarities(brightness):
    uploads = as_uploads(brightness, generator=seeded(0))
    unchanged = (uploads == brightness).flatten(1).all(dim=1)
    assert abs(unchanged.float().mean().item() - MNIST_SHARE) < 0.07
    # The paper is what most of the frame shows: its median tells the polarity.
    paper = uploads[~unchanged].flatten(1).median(dim=1).values
    light_paper = (paper > 0.5).float().mean().item()
    assert 0.45 < light_paper < 0.75  # dark ink on light paper is the commoner upload
    assert (paper < 0.35).any()  # and light ink on dark exists


def test_the_digit_takes_20_to_100_percent_of_the_frame_anywhere_in_it(brightness):
    coverage = torch.nn.functional.avg_pool2d(placed(brightness, Draws(BATCH, brightness.device, seeded(0)), 2), 2)
    boxes = [ink_box(picture) for picture in coverage[:, 0].numpy()]
    longer = np.array([max(bottom - top, right - left) for top, left, bottom, right in boxes]) / 28
    centres = np.array([((top + bottom) / 2, (left + right) / 2) for top, left, bottom, right in boxes])
    assert longer.min() > 0.1 and longer.max() <= 1.0
    assert (longer < 0.35).mean() > 0.1 and (longer > 0.8).mean() > 0.1  # small and large digits both common
    assert (np.abs(centres - 14).max(axis=1) > 6).mean() > 0.1  # and many far from the centre


def test_the_flag_turns_it_on_after_the_affine_moves(brightness):
    normalised = (brightness - data.MNIST_MEAN) / data.MNIST_STD
    augmentation = data.Augmentation(upload_augmentation=True)
    uploads = augmentation(normalised, generator=seeded(0))
    moved = data.Augmentation()(normalised, generator=seeded(0))
    assert uploads.shape == normalised.shape
    # Normalised like the model's inputs: brightness 0..1 maps to MNIST's normalised black..white.
    assert uploads.min() >= data.MNIST_BACKGROUND - 1e-5 and uploads.max() <= (1 - data.MNIST_MEAN) / data.MNIST_STD + 1e-5
    assert not torch.allclose(uploads, moved)
