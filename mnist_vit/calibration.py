"""Calibration: fit a temperature on validation logits and fold it into the classifier, so scores mean what they say.

Label smoothing and early stopping leave a classifier's softmax under- or over-confident. Temperature
scaling (Guo et al., 2017) divides the logits by one number T, fitted to minimise the negative
log-likelihood of held-out examples; it changes no prediction. Dividing the last linear layer's weight and
bias by T gives the same logits / T from the model itself, so every way of running it (our image processor,
the plain-ViT root of the Hub repo, ONNX) gives calibrated probabilities.
"""

import torch
from torch import nn


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the cross-entropy of `logits / T` against `labels` (optimised as log T)."""
    logits, labels = logits.double(), labels.long()
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
        value.backward()
        return value

    optimizer.step(loss)
    return float(log_temperature.detach().exp())


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The last linear layer with one output per label: the head of any image-classification model
    (ours, ViT, ResNet's `Sequential(Flatten, Linear)`, ConvNeXt...)."""
    heads = [module for module in model.modules() if isinstance(module, nn.Linear)
             and module.out_features == model.config.num_labels]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no linear layer with {model.config.num_labels} outputs to calibrate.")
    return heads[-1]


@torch.no_grad()
def fold_temperature(model: nn.Module, temperature: float) -> None:
    """Make the model's logits `logits / temperature`: divide its classifier's weight and bias by it."""
    head = classifier_layer(model)
    head.weight.div_(temperature)
    if head.bias is not None:
        head.bias.div_(temperature)
