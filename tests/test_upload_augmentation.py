"""mnist_vit.upload_augmentation: MNIST digits made to look like uploads after the stock ViT processor."""

import numpy as np
import pytest
import torch

from conftest import MNIST_DIR
from mnist_vit import data
from mnist_vit.upload_augmentation import (
    MNIST_SHARE, SHADOW_BAND_SHARE, Draws, as_uploads, glare, light, on_sticky_note, placed,
)

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
    # The paper is what most of the frame shows (its median); the ink lies far to one side of it.
    pixels = uploads[~unchanged].flatten(1)
    darkest, paper, lightest = torch.quantile(pixels, torch.tensor([0.01, 0.5, 0.99]), dim=1)
    dark_ink = paper - darkest > lightest - paper
    assert 0.45 < dark_ink.float().mean().item() < 0.75  # dark ink on light paper is the commoner upload
    assert (~dark_ink & (paper < 0.35)).any()  # and light ink on a dark ground exists
    assert (dark_ink & (paper < 0.4)).any()  # and dark ink on dim paper


def test_a_share_is_a_clean_canvas(brightness):
    pixels = as_uploads(brightness, generator=seeded(0)).flatten(1)
    paper = pixels.median(dim=1).values
    # white paper, even to the last pixel: no light, lines, desk or noise
    clean = (paper > 0.88) & (pixels.max(dim=1).values - paper < 0.002)
    assert 0.08 < clean.float().mean().item() < 0.2  # of the pictures: a drawing app's export is a common upload


def test_the_digit_takes_20_to_100_percent_of_the_frame_anywhere_in_it(brightness):
    coverage = torch.nn.functional.avg_pool2d(placed(brightness, Draws(BATCH, brightness.device, seeded(0)), 2)[0], 2)
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


def test_a_shadow_band_has_hard_edges_in_a_share_of_the_pictures():
    light_factors = light(Draws(BATCH, torch.device("cpu"), seeded(0)), 28, 28)[:, 0]
    # a gradient changes by under 0.05 from one pixel to the next; a band's edge by 0.1 or more
    step = torch.maximum(light_factors.diff(dim=-1).abs().amax(dim=(1, 2)), light_factors.diff(dim=-2).abs().amax(dim=(1, 2)))
    banded = step > 0.08
    assert abs(banded.float().mean().item() - SHADOW_BAND_SHARE) < 0.07
    # a band, not a darker frame: some of each banded picture is in the shadow, some not
    shadowed = light_factors < light_factors.amax(dim=(1, 2), keepdim=True) * 0.8
    share = shadowed.flatten(1).float().mean(dim=1)[banded]
    assert share.min() > 0.02 and share.max() < 0.8


def test_glare_washes_out_a_spot_towards_white():
    grey = torch.full((BATCH, 1, 28, 28), 0.4)
    glared = glare(grey, Draws(BATCH, torch.device("cpu"), seeded(0)), shown=torch.ones(BATCH, 1, 1, 1, dtype=torch.bool))
    assert glared.amax(dim=(1, 2, 3)).min() > 0.6 and glared.max() <= 1  # every spot, up to white
    assert (glared > 0.5).flatten(1).float().mean(dim=1).max() < 0.5  # a spot, not the whole frame


def test_a_sticky_note_is_paper_around_the_digit_with_the_desk_all_around():
    paper = torch.full((BATCH, 1, 28, 28), 0.9)
    box = tuple(torch.full((BATCH,), value) for value in (0.0, 0.0, 0.3, 0.4))  # centred, 30% x 40% of the frame
    on_note = on_sticky_note(paper, Draws(BATCH, torch.device("cpu"), seeded(0)), box, torch.ones(BATCH, 1, 1, 1, dtype=torch.bool))
    assert (on_note[:, 0, 9:19, 10:18] == 0.9).all()  # the digit's place stays paper
    corners = on_note[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners <= 0.45).all()  # the desk all around
