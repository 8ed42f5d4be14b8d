"""Distillation from a small convolutional teacher, the way DeiT taught a ViT from a CNN, keeping the model as it is.

`train.py --teacher_epochs N` first trains `ConvTeacher` for N epochs on the same training digits and augmentation
(a plain loop: a 140k-parameter CNN needs none of the Trainer), then trains the model on a mix of the labels and the
teacher's soft predictions for each augmented batch (`distillation_loss`, on the classification head). The teacher
is kept in the output folder while the run trains, so a resumed run uses the same one, and removed when it ends:
it is not part of the trained model (its validation accuracy is in `train_results.json`).

`train.py --teacher_model NAME` distils from a trained mnist-vit model instead (`ModelTeacher`): the Hub root's
training, where the shipped model reads each digit as it is and the root learns to read the upload made of it
(`--upload_augmentation`) the same way. Either teacher sees the digits before they are made uploads.
"""

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .data import Augmentation, InMemorySplit, collate_batch
from .errors import UserError
from .inference import DAMAGED_WEIGHTS, check_model_location, first_line

TEACHER_FILE = "teacher.safetensors"
PARTIAL_TEACHER_FILE = f".{TEACHER_FILE}.partial"  # while it is written
TEACHER_WIDTH = 32  # channels of the first convolutions; 2x and 4x deeper in
TEACHER_BATCH_SIZE = 128
TEACHER_LEARNING_RATE = 3e-3  # the peak of a one-cycle schedule
TEACHER_WEIGHT = 0.5  # the teacher's share of the model's loss; the labels (smoothed) have the rest
TEMPERATURE = 2.0  # softens both predictions before they are compared


def conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]


class ConvTeacher(nn.Sequential):
    """Five 3x3 convolutions with batch norm (28 -> 14 -> 7 pixels), global average pooling and a linear head."""

    def __init__(self, num_labels: int, width: int = TEACHER_WIDTH):
        super().__init__(
            *conv_block(1, width), *conv_block(width, width), nn.MaxPool2d(2),
            *conv_block(width, 2 * width), *conv_block(2 * width, 2 * width), nn.MaxPool2d(2),
            *conv_block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_labels),
        )


class InferenceTeacher(nn.Sequential):
    """A trained `ConvTeacher` as the model's training steps call it, on every batch: each batch norm folded into
    the convolution before it, and channels-last memory (a batch of 128 in 20 ms on two CPU cores, 48 ms before:
    the teacher's share of a distilled step)."""

    def __init__(self, teacher: ConvTeacher):
        layers = []
        for module in teacher.eval():
            if isinstance(module, nn.BatchNorm2d):
                layers[-1] = fuse_conv_bn_eval(layers[-1], module)
            else:
                layers.append(module)
        super().__init__(*layers)
        self.eval().to(memory_format=torch.channels_last)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values.contiguous(memory_format=torch.channels_last))


class ModelTeacher(nn.Module):
    """A trained mnist-vit model as the teacher (`train.py --teacher_model`): its logits for a normalised batch."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    @classmethod
    def from_pretrained(cls, name: str, num_labels: int, device: torch.device, token: str | None) -> "ModelTeacher":
        from transformers import AutoConfig

        from .configuration_mnist_vit import MnistViTConfig
        from .modeling_mnist_vit import MnistViTForImageClassification

        try:
            check_model_location(name)
            config = AutoConfig.from_pretrained(name, token=token)
        except (OSError, ValueError) as err:  # no such folder or repo, no network
            raise UserError(f"Could not load the teacher model {name!r}: {err}") from err
        if config.model_type != MnistViTConfig.model_type:  # e.g. a published repo's root, a plain ViT
            raise UserError(
                f"The teacher model {name!r} is a {config.model_type!r} model, not an mnist-vit one: give a folder "
                "train.py wrote, such as checkpoints/mnist-vit (a published repo's mnist-vit model is in its "
                "remote_code/ folder)."
            )
        try:
            model = MnistViTForImageClassification.from_pretrained(name, config=config, token=token)
        except SafetensorError as err:
            raise UserError(DAMAGED_WEIGHTS.format(path=name, error=first_line(err))) from None
        if model.config.num_labels != num_labels:
            raise UserError(
                f"The teacher model {name!r} classifies {model.config.num_labels} labels, the data has {num_labels}: "
                "give a teacher trained on the same labels."
            )
        return cls(model.to(device))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float
) -> torch.Tensor:
    """(1 - TEACHER_WEIGHT) x cross-entropy with the labels + TEACHER_WEIGHT x KL divergence from the teacher's
    predictions, both softened by TEMPERATURE (times its square, so the gradients keep their size)."""
    hard = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    soft = F.kl_div(
        F.log_softmax(logits / TEMPERATURE, dim=-1), F.log_softmax(teacher_logits / TEMPERATURE, dim=-1),
        reduction="batchmean", log_target=True,
    )
    return (1 - TEACHER_WEIGHT) * hard + TEACHER_WEIGHT * TEMPERATURE**2 * soft


@torch.no_grad()
def accuracy(teacher: nn.Module, split: InMemorySplit, device: torch.device) -> float:
    teacher.eval()
    correct = 0
    for indices in torch.arange(len(split)).split(1000):
        batch = collate_batch(split[indices])
        correct += (teacher(batch["pixel_values"].to(device)).argmax(-1).cpu() == batch["labels"]).sum().item()
    return correct / len(split)


def train_teacher(
    train: InMemorySplit, num_labels: int, augmentation: Augmentation, epochs: int, seed: int, device: torch.device
) -> ConvTeacher:
    """The teacher after `epochs` passes over `train` (AdamW, one-cycle schedule, label smoothing 0.1), each batch
    augmented as the model's will be."""
    torch.manual_seed(seed)
    teacher = ConvTeacher(num_labels).to(device)
    steps_per_epoch = math.ceil(len(train) / TEACHER_BATCH_SIZE)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=TEACHER_LEARNING_RATE, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, TEACHER_LEARNING_RATE, total_steps=epochs * steps_per_epoch)
    teacher.train()
    for epoch in range(1, epochs + 1):
        losses = []
        for indices in torch.randperm(len(train)).split(TEACHER_BATCH_SIZE):
            batch = collate_batch(train[indices])
            pixel_values = augmentation.moved(batch["pixel_values"].to(device))
            loss = F.cross_entropy(teacher(pixel_values), batch["labels"].to(device), label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
        print(f"teacher epoch {epoch}/{epochs}: training loss {torch.stack(losses).mean().item():.4f}", flush=True)
    return teacher.eval()


def load_or_train_teacher(
    output_dir: Path, train: InMemorySplit, num_labels: int, augmentation: Augmentation, epochs: int, seed: int,
    device: torch.device, save: bool,
) -> InferenceTeacher:
    """The teacher that this run saved in `output_dir` before it was stopped, or a new one, trained (and with
    `save`, saved there: written whole or not at all, with its epochs and labels to check a resume against);
    ready for inference."""
    path = output_dir / TEACHER_FILE
    wanted = {"epochs": str(epochs), "num_labels": str(num_labels)}
    if path.exists():
        with safe_open(path, "pt") as saved:
            recorded = saved.metadata() or {}
        if recorded != wanted:
            raise UserError(
                f"{path} is the teacher of a run with other settings ({recorded}, now {wanted}): resume with the "
                "same --teacher_epochs and data, or start afresh with --overwrite_output_dir."
            )
        teacher = ConvTeacher(num_labels)
        teacher.load_state_dict(load_file(path))
        return InferenceTeacher(teacher.to(device))
    teacher = train_teacher(train, num_labels, augmentation, epochs, seed, device)
    if save:
        partial = output_dir / PARTIAL_TEACHER_FILE
        save_file(teacher.state_dict(), partial, metadata=wanted)
        os.replace(partial, path)
    return InferenceTeacher(teacher)
