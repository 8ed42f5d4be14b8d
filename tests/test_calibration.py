"""mnist_vit.calibration: the fitted temperature, and folding it into any classifier's head."""

import pytest
import torch
from transformers import ConvNextConfig, ConvNextForImageClassification, ResNetConfig, ResNetForImageClassification

from mnist_vit import MnistViTConfig, MnistViTForImageClassification
from mnist_vit.calibration import fit_temperature, fold_temperature


def test_fitted_temperature_recovers_the_one_that_made_the_labels():
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(20000, 10, generator=generator)
    # labels drawn from softmax(logits / 2.5): the logits are 2.5 times too confident
    labels = torch.multinomial(torch.softmax(logits / 2.5, dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


@pytest.mark.parametrize(
    "model",
    [
        MnistViTForImageClassification(MnistViTConfig(hidden_size=32, num_hidden_layers=1, intermediate_size=64)),
        ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10)),
        ConvNextForImageClassification(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=10)),
    ],
    ids=["mnist_vit", "resnet", "convnext"],
)
def test_folding_divides_the_models_own_logits(model):
    model.eval()
    pixels = torch.randn(4, model.config.num_channels, 28, 28)
    before = model(pixel_values=pixels).logits
    fold_temperature(model, 0.5)
    assert torch.allclose(model(pixel_values=pixels).logits, before / 0.5, atol=1e-5)
