"""Distillation from a CNN teacher (`train.py --teacher_epochs N`): the loss, the teacher, and a run that uses one."""

import json

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import MNIST_DIR, QUICK_RUN_FLAGS, TINY_MODEL, run_train
from mnist_vit import distillation
from mnist_vit.data import Augmentation, InMemorySplit, read_idx
from mnist_vit.training import check_output_dir


def split_of(count: int, offset: int = 0) -> InMemorySplit:
    """MNIST training digits offset to offset + count, as train.py holds a split."""
    images = read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")[offset:offset + count]
    labels = read_idx(MNIST_DIR / "train-labels-idx1-ubyte.gz")[offset:offset + count].astype(np.int64)
    features = datasets.Features({"pixel_values": datasets.Array2D((28, 28), "uint8"), "label": datasets.Value("int64")})
    return InMemorySplit(datasets.Dataset.from_dict({"pixel_values": images, "label": labels}, features=features))


def test_the_loss_is_the_labels_alone_when_the_model_already_agrees_with_its_teacher():
    logits = torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    loss = distillation.distillation_loss(logits, logits.clone(), labels, label_smoothing=0.1)
    expected = (1 - distillation.TEACHER_WEIGHT) * F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)


def test_the_loss_pulls_the_model_toward_the_teacher_where_the_labels_say_nothing():
    # the labels agree with both; the teacher is sure of its second guess, the model is not
    labels = torch.zeros(4, dtype=torch.long)
    teacher = torch.tensor([[4.0, 3.0] + [0.0] * 8]).repeat(4, 1)
    logits = torch.zeros(4, 10, requires_grad=True)
    distillation.distillation_loss(logits, teacher, labels, label_smoothing=0.0).backward()
    with_teacher = -logits.grad[0]
    logits.grad = None
    F.cross_entropy(logits, labels).backward()
    without = -logits.grad[0]
    assert with_teacher[1] > 0 > without[1]  # only the teacher raises class 1
    assert with_teacher[1] > with_teacher[2:].max()


@pytest.mark.slow
def test_the_teacher_learns_mnist_and_a_saved_teacher_is_used_again(tmp_path):
    train, held_out = split_of(4000), split_of(1000, offset=50000)
    augmentation = Augmentation()
    teacher = distillation.load_or_train_teacher(tmp_path, train, 10, augmentation, 2, 0, torch.device("cpu"))
    assert distillation.accuracy(teacher, held_out, torch.device("cpu")) > 0.9
    saved = load_file(tmp_path / distillation.TEACHER_FILE)
    # a resumed run reads the teacher back rather than train another (which a new seed would make differ)
    again = distillation.load_or_train_teacher(tmp_path, train, 10, augmentation, 2, 1, torch.device("cpu"))
    for name, value in again.state_dict().items():
        torch.testing.assert_close(value, saved[name])


def test_an_unfinished_distilled_run_is_resumed_not_refused(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / distillation.TEACHER_FILE).write_bytes(b"")
    check_output_dir(tmp_path)  # no error: the folder holds only what the run itself wrote


@pytest.mark.slow
def test_a_distilled_run_reports_its_teacher_and_starts_afresh_with_overwrite(tmp_path):
    output_dir = tmp_path / "run"
    flags = [*QUICK_RUN_FLAGS, *TINY_MODEL, "--teacher_epochs", "1", "--output_dir", str(output_dir)]
    first = run_train(*flags)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Teacher's validation accuracy" in first.stdout
    results = json.loads((output_dir / "train_results.json").read_text())
    assert 0 <= results["teacher_eval_accuracy"] <= 1  # how well it learns: the test above
    teacher_bytes = (output_dir / distillation.TEACHER_FILE).read_bytes()

    second = run_train(*flags, "--overwrite_output_dir", "true", "--seed", "7")
    assert second.returncode == 0, second.stderr[-3000:]
    assert (output_dir / distillation.TEACHER_FILE).read_bytes() != teacher_bytes  # trained again, not reused
