"""Distillation from a CNN teacher (`train.py --teacher_epochs N`) or a trained model (`--teacher_model`): the loss,
the teachers, what they read, and runs that use one."""

import json

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import ViTConfig, ViTForImageClassification

from conftest import MNIST_DIR, QUICK_RUN_FLAGS, TINY_MODEL, run_train, train_refusal
from mnist_vit import MnistViTConfig, MnistViTForImageClassification, distillation
from mnist_vit.data import Augmentation, InMemorySplit, collate_batch, read_idx
from mnist_vit.errors import UserError
from mnist_vit.training import AugmentingTrainer, MnistViTTrainingArguments, ModelArguments, build_model, check_output_dir


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
    cpu = torch.device("cpu")
    teacher = distillation.load_or_train_teacher(tmp_path, train, 10, augmentation, 3, 0, cpu, save=True)
    assert not teacher.training  # batch norm with its running statistics
    assert distillation.accuracy(teacher, held_out, cpu) > 0.9  # 95.0-95.8% over seeds 0-3 here (2 epochs: 92.5-94.3%)
    assert set(load_file(tmp_path / distillation.TEACHER_FILE)) == set(distillation.ConvTeacher(10).state_dict())
    # a resumed run reads the teacher back rather than train another (which a new seed would make differ)
    again = distillation.load_or_train_teacher(tmp_path, train, 10, augmentation, 3, 1, cpu, save=True)
    assert not again.training
    digits = collate_batch(held_out[torch.arange(100)])["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(again(digits), teacher(digits))
    # a resume with another teacher is refused, naming what differs
    with pytest.raises(UserError, match="other settings.*--teacher_epochs"):
        distillation.load_or_train_teacher(tmp_path, train, 10, augmentation, 4, 0, cpu, save=True)


def test_the_inference_teacher_predicts_what_the_teacher_does():
    torch.manual_seed(0)
    teacher = distillation.ConvTeacher(10, width=8)
    for module in teacher.modules():  # batch norms with statistics of their own, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2), module.weight.data.uniform_(0.5, 2)
    digits = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        expected = teacher.eval()(digits)
        fast = distillation.InferenceTeacher(teacher)
        torch.testing.assert_close(fast(digits), expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in fast.modules())  # folded away


def test_an_unfinished_distilled_run_is_resumed_not_refused(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / distillation.TEACHER_FILE).write_bytes(b"")
    (tmp_path / distillation.PARTIAL_TEACHER_FILE).write_bytes(b"")  # a save cut short
    check_output_dir(tmp_path)  # no error: the folder holds only what the run itself wrote


def test_the_trainer_uses_the_teacher_for_the_training_loss_only(tmp_path):
    model = MnistViTForImageClassification(MnistViTConfig(hidden_size=32, num_hidden_layers=1, intermediate_size=64))
    teacher = distillation.InferenceTeacher(distillation.ConvTeacher(10, width=4))
    args = MnistViTTrainingArguments(
        output_dir=str(tmp_path), label_smoothing_factor=0.1, eval_strategy="no", load_best_model_at_end=False, use_cpu=True
    )
    no_augmentation = Augmentation(rotation=0, translate=0, zoom=0, shear=0)
    trainer = AugmentingTrainer(model=model, args=args, augmentation=no_augmentation, teacher=teacher)
    inputs = {"pixel_values": torch.randn(6, 1, 28, 28), "labels": torch.arange(6)}
    with torch.no_grad():
        expected = distillation.distillation_loss(
            model(pixel_values=inputs["pixel_values"]).logits, teacher(inputs["pixel_values"]), inputs["labels"], 0.1
        )
        torch.testing.assert_close(trainer.compute_loss(model.train(), dict(inputs)), expected)
        plain = trainer.compute_loss(model.eval(), dict(inputs))  # evaluation: the labels alone, as without a teacher
    torch.testing.assert_close(plain, F.cross_entropy(model(pixel_values=inputs["pixel_values"]).logits, inputs["labels"], label_smoothing=0.1))


@pytest.mark.slow
def test_a_distilled_run_reports_its_teacher_and_leaves_it_out_of_the_result(tmp_path):
    output_dir = tmp_path / "run"
    result = run_train(*QUICK_RUN_FLAGS, *TINY_MODEL, "--teacher_epochs", "1", "--output_dir", str(output_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training a CNN teacher for 1 epochs" in result.stdout and "Teacher's validation accuracy" in result.stdout
    results = json.loads((output_dir / "train_results.json").read_text())
    assert 0 <= results["teacher_eval_accuracy"] <= 1  # how well it learns: the test above
    assert not (output_dir / distillation.TEACHER_FILE).exists()  # needed only to resume; not part of the model


def test_a_model_teacher_reads_each_digit_before_it_is_made_an_upload(tmp_path):
    model = MnistViTForImageClassification(MnistViTConfig(hidden_size=32, num_hidden_layers=1, intermediate_size=64))
    teacher_read, model_read = [], []

    def teacher(pixel_values):
        teacher_read.append(pixel_values)
        return torch.zeros(len(pixel_values), 10)

    model.register_forward_pre_hook(lambda module, args, kwargs: model_read.append(kwargs["pixel_values"]), with_kwargs=True)
    args = MnistViTTrainingArguments(output_dir=str(tmp_path), eval_strategy="no", load_best_model_at_end=False, use_cpu=True)
    uploads = Augmentation(rotation=0, translate=0, zoom=0, shear=0, upload_augmentation=True)
    trainer = AugmentingTrainer(model=model, args=args, augmentation=uploads, teacher=teacher)
    digits = collate_batch(split_of(64)[torch.arange(64)])["pixel_values"]
    trainer.compute_loss(model.train(), {"pixel_values": digits, "labels": torch.zeros(64, dtype=torch.long)})
    torch.testing.assert_close(teacher_read[0], digits, atol=1e-4, rtol=0)  # the digits as they came
    made_uploads = (model_read[0] - digits).abs().amax(dim=(1, 2, 3)) > 0.5
    assert made_uploads.float().mean() > 0.5  # the model read uploads made of them (MNIST_SHARE stay as they are)


def test_a_model_teacher_gives_the_models_logits_and_a_wrong_one_is_refused(tmp_path):
    config = MnistViTConfig(hidden_size=32, num_hidden_layers=1, intermediate_size=64)
    MnistViTForImageClassification(config).save_pretrained(tmp_path / "teacher")
    cpu = torch.device("cpu")
    teacher = distillation.ModelTeacher.from_pretrained(str(tmp_path / "teacher"), 10, cpu, None)
    digits = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        expected = MnistViTForImageClassification.from_pretrained(tmp_path / "teacher").eval()(pixel_values=digits).logits
        torch.testing.assert_close(teacher(digits), expected)
    with pytest.raises(UserError, match="classifies 10 labels, the data has 3"):
        distillation.ModelTeacher.from_pretrained(str(tmp_path / "teacher"), 3, cpu, None)
    with pytest.raises(UserError, match="Could not load the teacher model .*nowhere"):
        distillation.ModelTeacher.from_pretrained(str(tmp_path / "nowhere"), 10, cpu, None)
    # a published repo's root is a plain ViT: it would load as an mnist-vit model with new, random weights
    ViTForImageClassification(ViTConfig(image_size=28, patch_size=7, num_channels=3, num_labels=10)).save_pretrained(
        tmp_path / "plain"
    )
    with pytest.raises(UserError, match="is a 'vit' model, not an mnist-vit one"):
        distillation.ModelTeacher.from_pretrained(str(tmp_path / "plain"), 10, cpu, None)
    weights = tmp_path / "teacher" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(UserError, match="The weights in .*teacher are damaged"):
        distillation.ModelTeacher.from_pretrained(str(tmp_path / "teacher"), 10, cpu, None)
    # train.py's --model_name_or_path reads it the same way
    with pytest.raises(UserError, match="The weights in .*teacher are damaged"):
        build_model(ModelArguments(model_name_or_path=str(tmp_path / "teacher")), [str(d) for d in range(10)])


def test_two_teachers_are_refused_before_any_data_is_read(tmp_path, capsys):
    error = train_refusal(capsys, "--teacher_epochs", "1", "--teacher_model", "checkpoints/mnist-vit", "--data_dir",
                          str(tmp_path), "--output_dir", str(tmp_path / "run"))
    assert "--teacher_model and --teacher_epochs each choose a teacher" in error
