"""train.py speaks run_image_classification.py's language: its flags, --do_*, --overwrite_output_dir,
image folders without test/, stock models fine-tuned on MNIST, --push_to_hub. Real MNIST subsets, real runs."""

import json
import os
import shutil
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageClassification,
    ConvNextConfig,
    ConvNextForImageClassification,
    ConvNextImageProcessorPil,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessorPil,
)

from conftest import MNIST_DIR, REPO_ROOT, TINY_MODEL, assert_user_error, folder_digest, run_train, train_refusal
from hub_server import Account, FakeHub
from mnist_vit.data import normalize, read_idx
from mnist_vit.transfer import StockModelInput

import train  # noqa: E402  (the entry point, from REPO_ROOT: conftest puts it on sys.path)

QUICK = ["--max_train_samples", "256", "--max_eval_samples", "64", "--validation_size", "128", "--max_steps", "2",
         "--per_device_train_batch_size", "32", "--disable_tqdm", "true"]


def test_run_image_classification_flags_are_aliases_and_help_says_so():
    model_args, data_args, _, training_args = train.parse_arguments(
        ["--train_val_split", "0.15", "--token", "hf_x", "--eval_only", "--output_dir", "unused",
         "--ignore_mismatched_sizes", "--trust_remote_code", "true", "--model_revision", "v2", "--cache_dir", "c",
         "--image_column_name", "img", "--label_column_name", "fine_label", "--dataset_config_name", "mnist",
         "--train_dir", "t", "--validation_dir", "v", "--overwrite_output_dir"]
    )
    assert data_args.validation_size == 0.15 and training_args.hub_token == "hf_x" and training_args.do_predict
    assert training_args.steps() == (False, False, True)
    assert model_args.ignore_mismatched_sizes and model_args.trust_remote_code and model_args.model_revision == "v2"
    assert (data_args.image_column_name, data_args.label_column_name, data_args.dataset_config_name) == ("img", "fine_label", "mnist")
    assert (data_args.train_dir, data_args.validation_dir, training_args.overwrite_output_dir) == ("t", "v", True)
    assert train.parse_arguments(["--output_dir", "unused"])[3].steps() == (True, True, True)
    assert train.parse_arguments(["--do_eval", "--output_dir", "unused"])[3].steps() == (False, True, False)
    help_text = " ".join(train.build_parser().format_help().split())
    assert "--train_val_split is the same flag" in help_text and "--token is the same flag" in help_text
    assert "--eval_only is the same flag" in help_text


def test_every_flag_has_help_and_run_modes_are_training_arguments():
    flags = [action for action in train.build_parser()._actions if action.option_strings and action.dest != "help"]
    assert [action.option_strings[0] for action in flags if not action.help] == []
    *_, training_args = train.parse_arguments(
        ["--early_stopping_patience", "3", "--hp_search_trials", "2", "--output_dir", "unused"]
    )
    assert (training_args.early_stopping_patience, training_args.hp_search_trials) == (3, 2)


@pytest.mark.slow
def test_do_flags_do_exactly_what_they_name(trained_run, tmp_path):
    evaluated = tmp_path / "evaluated"
    result = run_train("--do_eval", "--model_name_or_path", str(trained_run), "--output_dir", str(evaluated), *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in evaluated.iterdir() if path.name != ".train.lock") == ["all_results.json", "eval_results.json"]
    assert "validation accuracy" in result.stdout

    trained = tmp_path / "trained"
    result = run_train("--do_train", "--output_dir", str(trained), *TINY_MODEL, *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (trained / "model.safetensors").is_file() and (trained / "training_curves.png").is_file()
    assert not (trained / "test_results.json").exists() and not (trained / "eval_results.json").exists()


@pytest.mark.slow
def test_overwrite_output_dir_starts_afresh_but_never_touches_other_files(trained_run, tmp_path, capsys):
    finished = tmp_path / "finished"
    shutil.copytree(trained_run, finished)
    (finished / "notes.txt").write_text("mine")
    before = folder_digest(finished)
    assert "holds other files (notes.txt)" in train_refusal(capsys, "--output_dir", str(finished), "--overwrite_output_dir", *QUICK)
    assert folder_digest(finished) == before

    (finished / "notes.txt").unlink()
    old_checkpoints = {path.name for path in finished.glob("checkpoint-*")}
    result = run_train("--output_dir", str(finished), "--overwrite_output_dir", *TINY_MODEL, *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" not in result.stdout
    assert json.loads((finished / "trainer_state.json").read_text())["global_step"] == 2
    assert {path.name for path in finished.glob("checkpoint-*")} == {"checkpoint-2"} != old_checkpoints
    assert json.loads((finished / "config.json").read_text())["hidden_size"] == 64  # the new, smaller model

    # a folder no train.py run wrote to: a log folder named as the Trainer's stays, though it is all there is
    theirs = tmp_path / "theirs"
    (theirs / "runs").mkdir(parents=True)
    (theirs / "runs" / "events.txt").write_text("another project's logs")
    result = run_train("--output_dir", str(theirs), "--overwrite_output_dir", *TINY_MODEL, *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (theirs / "runs" / "events.txt").read_text() == "another project's logs"


def write_digit_folder(root, splits: tuple[str, ...], per_class: int = 12) -> None:
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    for offset, split in enumerate(splits):
        for digit in range(10):
            (root / split / str(digit)).mkdir(parents=True)
            chosen = np.flatnonzero(labels == digit)[offset * per_class : (offset + 1) * per_class]
            for index in chosen:
                Image.fromarray(images[index]).save(root / split / str(digit) / f"{index}.png")


@pytest.mark.slow
def test_image_folders_without_test_are_reported_on_validation(tmp_path, capsys):
    write_digit_folder(tmp_path / "digits", ("train", "validation"))
    cache = tmp_path / "cache"
    for source in (["--data_dir", str(tmp_path / "digits")],
                   ["--train_dir", str(tmp_path / "digits" / "train"), "--validation_dir", str(tmp_path / "digits" / "validation")]):
        output_dir = tmp_path / f"run{len(source)}"
        command = [sys.executable, str(REPO_ROOT / "train.py"), *source, "--output_dir", str(output_dir), *TINY_MODEL,
                   *QUICK, "--cache_dir", str(cache), "--image_column_name", "image", "--label_column_name", "label"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        results = json.loads((output_dir / "test_results.json").read_text())
        assert results["test_split"] == "validation (the data has no test split)"
        assert np.sum(results["test_confusion_matrix"]) == 64
        assert (output_dir / "classification_report.txt").read_text().startswith("Reported on validation (the data has no test split): 64 examples")
        assert "validation (no test split) accuracy" in result.stdout
    assert any(cache.rglob("*.arrow"))  # --cache_dir holds the image folder's cache

    error = train_refusal(capsys, "--output_dir", str(tmp_path / "bad"), *QUICK, "--image_column_name", "picture")
    assert "has no Image column 'picture'" in error


@pytest.mark.slow
def test_train_val_split_holds_out_a_fraction(tmp_path):
    write_digit_folder(tmp_path / "digits", ("train",), per_class=10)
    output_dir = tmp_path / "run"
    command = [sys.executable, str(REPO_ROOT / "train.py"), "--train_dir", str(tmp_path / "digits" / "train"),
               "--train_val_split", "0.2", "--output_dir", str(output_dir), *TINY_MODEL, "--max_steps", "1",
               "--disable_tqdm", "true"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.sum(json.loads((output_dir / "test_results.json").read_text())["test_confusion_matrix"]) == 20


# --- transfer learning: small random stock models saved locally ----------------------------------


STOCK_MODELS = {
    "vit": (ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=64, num_labels=3)),
            ViTImageProcessorPil(size={"height": 32, "width": 32})),
    "resnet": (ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)),
               ConvNextImageProcessorPil(size={"shortest_edge": 40})),
    "convnext": (ConvNextForImageClassification(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3)),
                 ConvNextImageProcessorPil(size={"shortest_edge": 32})),
}


@pytest.fixture(scope="module", params=sorted(STOCK_MODELS))
def stock_model(request, tmp_path_factory) -> tuple[str, object, object]:
    """(its folder, its processor, its class name): a small random stock model with 3 labels, saved locally."""
    model, processor = STOCK_MODELS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, processor, type(model).__name__


def test_stock_input_matches_the_stock_processor(stock_model):
    _, processor, _ = stock_model
    digits = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:8].copy()
    expected = processor([Image.fromarray(digit).convert("RGB") for digit in digits], return_tensors="pt")["pixel_values"]
    mapped = StockModelInput.from_image_processor(processor, 3)(normalize(torch.from_numpy(digits)))
    assert mapped.shape == expected.shape
    difference = (mapped - expected).abs()
    # PIL rounds to uint8 and its bicubic kernel differs a little from torch's
    assert difference.mean() < 0.005 and difference.max() < 0.2


@pytest.mark.slow
def test_stock_model_fine_tunes_on_mnist_with_a_new_head(stock_model, tmp_path, capsys):
    folder, _, class_name = stock_model
    refused = train_refusal(capsys, "--model_name_or_path", str(folder), "--output_dir", str(tmp_path / "refused"), *QUICK)
    assert "classifies 3 labels" in refused and "--ignore_mismatched_sizes" in refused
    output_dir = tmp_path / "run"
    result = run_train("--model_name_or_path", str(folder), "--ignore_mismatched_sizes", "--output_dir", str(output_dir), *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert type(model).__name__ == class_name
    assert model.config.num_labels == 10
    assert json.loads((output_dir / "preprocessor_config.json").read_text())["image_mean"] != [0.1307]
    results = json.loads((output_dir / "test_results.json").read_text())
    assert np.sum(results["test_confusion_matrix"]) == 64 and "temperature" in results


# --- --push_to_hub ----------------------------------------------------------------------------------


def push_env(tmp_path, endpoint: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HF_ENDPOINT")}
    return {**env, "HF_HOME": str(tmp_path / "home"), "HF_DATASETS_CACHE": str(datasets.config.HF_DATASETS_CACHE),
            "HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_alice"}


@pytest.mark.slow
def test_push_to_hub_publishes_our_model_through_our_publisher(shipped_model, publishing_data, tmp_path):
    # the shipped model, hardly moved: the publisher refuses a model so untrained that its 8-bit ONNX export
    # disagrees with torch, which a 2-step run from scratch (or from the quick trained run) is
    with FakeHub({"hf_alice": Account("alice")}) as hub:
        result = run_train("--model_name_or_path", str(shipped_model), "--output_dir", str(tmp_path / "mnist-run"),
                           *QUICK, "--learning_rate", "1e-6", "--push_to_hub", "--data_dir", str(publishing_data),
                           env=push_env(tmp_path, hub.url))
        assert result.returncode == 0, result.stderr[-3000:]
        (commit,) = hub.commits
    files = set(hub.repos["alice/mnist-run"].files("main"))
    assert {"README.md", "config.json", "remote_code/modeling_mnist_vit.py", "examples/7.png"} <= files
    assert f"{hub.url}/alice/mnist-run" in result.stdout


@pytest.mark.slow
def test_push_to_hub_publishes_a_stock_model_the_trainers_way(tmp_path):
    folder = tmp_path / "vit"
    model, processor = STOCK_MODELS["vit"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    with FakeHub({"hf_alice": Account("alice")}) as hub:
        result = run_train("--model_name_or_path", str(folder), "--ignore_mismatched_sizes", "--output_dir",
                           str(tmp_path / "run"), *QUICK, "--push_to_hub", "--hub_model_id", "alice/vit-mnist",
                           env=push_env(tmp_path, hub.url))
        assert result.returncode == 0, result.stderr[-3000:]
    files = set(hub.repos["alice/vit-mnist"].files("main"))
    assert {"README.md", "config.json", "model.safetensors", "test_results.json", "reliability_diagram.png"} <= files
    assert not any(name.startswith("checkpoint-") for name in files)


@pytest.mark.slow
def test_push_to_hub_without_network_is_one_sentence_before_training(tmp_path):
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens
    result = run_train("--output_dir", str(tmp_path / "run"), *QUICK, "--push_to_hub", env=push_env(tmp_path, unreachable))
    assert_user_error(result, "Cannot reach the Hugging Face Hub")
    assert not (tmp_path / "run" / "model.safetensors").exists()
