"""push_to_hub.py and the publishing modules: the staged repo, its card, its check, and uploads to a loopback Hub.

The Hub is `hub_server.FakeHub`, a local HTTP server; the client is the real `huggingface_hub`, pointed at
it with `HF_ENDPOINT` in a subprocess (as users run push_to_hub.py) or with `HfApi(endpoint=...)`.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from PIL import Image

from app_harness import free_port
from conftest import REPO_ROOT
from hub_server import Account, FakeHub, Repo
from mnist_vit import MnistViTForImageClassification, MnistViTImageProcessor
from mnist_vit.data import read_idx
from mnist_vit.errors import UserError, exit_status
from mnist_vit.export import load_vit_export
from mnist_vit.hub_upload import check_write_access, upload
from mnist_vit.model_card import build_model_card
from mnist_vit.onnx_export import OnnxAgreement
from mnist_vit.run_folder import MODEL_FILES, load_run
from mnist_vit.staging import validate_staged_folder

import push_to_hub  # the entry point, from REPO_ROOT: conftest puts it on sys.path

REMOTE_CODE_FILES = (
    "config.json", "model.safetensors", "preprocessor_config.json",
    "configuration_mnist_vit.py", "modeling_mnist_vit.py", "image_processing_mnist_vit.py",
)
EXPECTED_FILES = {
    "README.md", "config.json", "model.safetensors", "preprocessor_config.json",
    "confusion_matrix.png", "misclassified.png", "reliability_diagram.png",
    *(f"examples/{digit}.png" for digit in range(10)),
    *(f"remote_code/{name}" for name in REMOTE_CODE_FILES),
    "onnx/model.onnx", "onnx/model_quantized.onnx",
}
UPLOAD_EXAMPLES = {"examples/drawing.png", "examples/photo.jpg"}
# The model trained to read uploads through the stock processor. A one-epoch run cannot be the root: its 8-bit
# ONNX file gives torch's label to too few test digits (about 98%), so publishing refuses it.
ROOT_MODEL = REPO_ROOT / "checkpoints" / "mnist-vit-root"
ALICE = {"hf_alice": Account("alice", orgs=["acme"])}
FRAMEWORKS = ("transformers", "torch", "datasets", "huggingface_hub")


def files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def run_push(*flags: str, home: Path, **environment: str) -> subprocess.CompletedProcess:
    """`python push_to_hub.py FLAGS` as a user runs it, with its own HF_HOME (no saved login) and `environment`."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HF_ENDPOINT")}
    # Keep the converted-MNIST cache that the trained_run fixture filled: rebuilding it takes minutes.
    env.update(HF_HOME=str(home), HF_DATASETS_CACHE=str(datasets.config.HF_DATASETS_CACHE), **environment)
    command = [sys.executable, str(REPO_ROOT / "push_to_hub.py"), *flags]
    return subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=600)


def entry_point_status(*flags: str) -> int:
    """push_to_hub.py's main in this process, as its command line runs it (a fresh process spends seconds on
    imports; the tests that upload run it as users do): the exit status."""
    return exit_status(lambda: push_to_hub.main(list(flags)))


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ")
    for fragment in fragments:
        assert fragment in error


def minutes_and_seconds(train_results_file: Path) -> str:
    minutes, seconds = divmod(round(json.loads(train_results_file.read_text())["train_runtime"]), 60)
    return f"{minutes} min {seconds} s"


def api_calls(hub: FakeHub) -> list[tuple[str, str]]:
    """The requests the hub received, less the agent-harness registry the client fetches once a day."""
    return [request for request in hub.requests if request[1] != "/api/agent-harnesses"]


@pytest.fixture(scope="module")
def staged_repo(shipped_model, publishing_data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The folder a `--dry_run --staging_dir` run builds and checks: the shipped model in remote_code/, the model
    trained for uploads at the root. (The quick run cannot be published: its 8-bit ONNX file gives torch's label
    to too few test digits, and it reads no 3 as the root does, so no widget example of a 3 reads alike.)"""
    home, folder = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("staged") / "repo"
    result = run_push(
        "--model_dir", str(shipped_model), "--root_model", str(ROOT_MODEL), "--repo_id", "alice/mnist-vit",
        "--data_dir", str(publishing_data), "--dry_run", "--staging_dir", str(folder), home=home,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result


# --- the dry run's folder and its card ---------------------------------------------------------------


@pytest.mark.slow
def test_dry_run_builds_and_checks_exactly_the_repo_files(staged_repo):
    folder, result = staged_repo
    assert "nothing was uploaded" in result.stdout
    assert files_in(folder) == EXPECTED_FILES | UPLOAD_EXAMPLES
    # no optimizer states, checkpoints, pickles or tokens
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) or "checkpoint" in name for name in files_in(folder))
    root_config = json.loads((folder / "config.json").read_text())
    assert root_config["model_type"] == "vit" and "auto_map" not in root_config
    for config_file in ("config.json", "preprocessor_config.json"):
        auto_map = json.loads((folder / "remote_code" / config_file).read_text())["auto_map"]
        assert auto_map and all(reference.startswith("remote_code/") for reference in auto_map.values())


@pytest.mark.slow
def test_widget_examples_are_test_digits_of_their_class(staged_repo, publishing_data):
    folder, _ = staged_repo
    images = read_idx(publishing_data / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(publishing_data / "t10k-labels-idx1-ubyte.gz")
    for digit in range(10):
        example = np.asarray(Image.open(folder / "examples" / f"{digit}.png"))
        assert any(np.array_equal(example, image) for image in images[labels == digit])


@pytest.mark.slow
def test_card_metadata_comes_from_the_run(staged_repo, shipped_model):
    folder, _ = staged_repo
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-classification"
    assert data["datasets"] == ["ylecun/mnist"] and data["metrics"] == ["accuracy", "f1"]
    assert {"vision", "vit", "mnist"} <= set(data["tags"])

    test_results = json.loads((shipped_model / "test_results.json").read_text())
    metrics = {result.metric_type: result for result in card.data.eval_results}
    assert metrics["accuracy"].metric_value == pytest.approx(test_results["test_accuracy"], abs=1e-4)
    assert metrics["f1"].metric_value == pytest.approx(test_results["test_f1_macro"], abs=1e-4)
    assert all(result.dataset_type == "ylecun/mnist" and result.dataset_split == "test" for result in metrics.values())

    widget = data["widget"]
    assert [entry["src"] for entry in widget] == [
        f"https://huggingface.co/alice/mnist-vit/resolve/main/examples/{name}"
        for name in [*(f"{digit}.png" for digit in range(10)), "drawing.png", "photo.jpg"]
    ]
    for entry in widget:
        scores = [output["score"] for output in entry["output"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_card_text_tells_the_model_its_results_and_use(staged_repo, shipped_model):
    folder, _ = staged_repo
    text = ModelCard.load(folder / "README.md").text
    headings = ("Architecture", "Training", "Results", "How to use", "Inputs and limits", "Citation")
    assert all(f"\n## {heading}\n" in text for heading in headings)
    num_parameters = MnistViTForImageClassification.from_pretrained(shipped_model).num_parameters()
    assert f"| parameters | {num_parameters:,} |" in text
    test_results = json.loads((shipped_model / "test_results.json").read_text())
    for digit, scores in test_results["test_per_class"].items():
        row = f"| {digit} | {scores['precision']:.4f} | {scores['recall']:.4f} | {scores['f1']:.4f} | {scores['support']} |"
        assert row in text
    assert "![confusion matrix](confusion_matrix.png)" in text and "(misclassified.png)" in text
    assert 'pipeline("image-classification", model="alice/mnist-vit")' in text
    assert 'subfolder="remote_code", trust_remote_code=True' in text
    assert "from mnist_vit import" in text
    assert "Gradient-based learning applied to document recognition" in text
    assert "\n## Licence\n" in text and "MNIST, is distributed under CC BY-SA 3.0" in text
    assert all(f"\n- {name} {importlib.metadata.version(name)}\n" in text for name in FRAMEWORKS)
    assert f"Training time: {minutes_and_seconds(shipped_model / 'train_results.json')}." in text
    assert "Per-epoch results: not recorded (no `trainer_state.json`)." in text


@pytest.mark.slow
def test_the_card_says_which_scores_are_calibrated(staged_repo, shipped_model):
    """Both models folded in a temperature fitted on validation; the card names each (the bare folder's card
    says its scores are uncalibrated)."""
    text = ModelCard.load(staged_repo[0] / "README.md").text
    temperatures = [
        json.loads((folder / "train_results.json").read_text())["temperature"] for folder in (shipped_model, ROOT_MODEL)
    ]
    assert "\n## What the scores mean\n" in text
    assert f"- In `remote_code/`, the scores are calibrated: a temperature (T = {temperatures[0]:.3f})" in text
    assert f"they are calibrated: a temperature (T = {temperatures[1]:.3f}) fitted on the validation split" in text
    assert "a 99% score is right about 99% of the time" in text


def test_the_card_of_a_run_with_its_history_shows_epochs_time_and_curves():
    """The root model's folder as a run: it has trainer_state.json, train_results.json with a temperature, and
    training_curves.png."""
    card = build_model_card(load_run(ROOT_MODEL), None, OnnxAgreement(10, 0.0, 1.0), "alice/mnist-vit", None, [])
    text = card.text
    log_history = json.loads((ROOT_MODEL / "trainer_state.json").read_text())["log_history"]
    evaluations = [index for index, entry in enumerate(log_history) if "eval_loss" in entry]
    assert evaluations
    for index in evaluations:
        entry = log_history[index]
        training_loss = next(earlier["loss"] for earlier in reversed(log_history[:index]) if "loss" in earlier)
        row = f"| {entry['epoch']:g} | {training_loss:.4f} | {entry['eval_loss']:.4f} | {entry['eval_accuracy']:.2%} |"
        assert row in text
    assert f"Training time: {minutes_and_seconds(ROOT_MODEL / 'train_results.json')}." in text
    assert "![training curves](training_curves.png)" in text
    temperature = json.loads((ROOT_MODEL / "train_results.json").read_text())["temperature"]
    assert f"The scores are calibrated: a temperature (T = {temperature:.3f})" in text
    assert ModelCard(str(card)).text == text


@pytest.mark.slow
def test_card_round_trips_through_model_card(staged_repo):
    folder, _ = staged_repo
    content = (folder / "README.md").read_text()
    card = ModelCard(content)
    again = ModelCard(str(card))
    assert again.data.to_dict() == card.data.to_dict()
    assert again.text == card.text


# --- the check before upload ---------------------------------------------------------------------------


@pytest.mark.slow
def test_check_refuses_remote_code_that_does_not_load_from_its_subfolder(staged_repo, tmp_path, monkeypatch):
    """transformers fetches remote code from the repo root: an auto_map without the folder cannot load."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))  # the check's process caches remote code there
    folder = shutil.copytree(staged_repo[0], tmp_path / "repo")
    config_file = folder / "remote_code" / "config.json"
    config = json.loads(config_file.read_text())
    config["auto_map"] = {key: value.removeprefix("remote_code/") for key, value in config["auto_map"].items()}
    config_file.write_text(json.dumps(config))
    refusal = r"nothing was uploaded: loading remote_code/ with trust_remote_code=True failed"
    with pytest.raises(UserError, match=refusal):
        validate_staged_folder(folder)


# --- uploads to the loopback Hub --------------------------------------------------------------------


LOAD_FROM_HUB = """
import json, sys
sys.modules["mnist_vit"] = None  # as for a user who only has transformers
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline
picture = Image.open(sys.argv[1])
root = pipeline("image-classification", model="alice/mnist-vit")
remote_code = {"subfolder": "remote_code", "trust_remote_code": True}
model = AutoModelForImageClassification.from_pretrained("alice/mnist-vit", **remote_code)
processor = AutoImageProcessor.from_pretrained("alice/mnist-vit", **remote_code)
remote = pipeline("image-classification", model=model, image_processor=processor)
print(json.dumps([root(picture, top_k=1)[0]["label"], remote(picture, top_k=1)[0]["label"], type(model).__module__]))
"""


@pytest.mark.slow
def test_publish_sends_one_commit_that_loads_from_the_hub(staged_repo, shipped_model, publishing_data, tmp_path):
    with FakeHub(ALICE) as hub:
        result = run_push(
            "--model_dir", str(shipped_model), "--root_model", str(ROOT_MODEL), "--repo_id", "alice/mnist-vit",
            "--data_dir", str(publishing_data), home=tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN="hf_alice",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{hub.url}/alice/mnist-vit" in result.stdout
        assert len(hub.commits) == 1
        commit = hub.commits[0]
        assert (commit.repo_id, commit.revision, commit.create_pr) == ("alice/mnist-vit", "main", False)
        assert set(commit.files) == EXPECTED_FILES | UPLOAD_EXAMPLES
        assert commit.summary.startswith("Upload mnist-vit")
        assert not hub.repos["alice/mnist-vit"].private
        # the card points the widget at the examples of the repo it was published to
        assert f"{hub.url}/alice/mnist-vit/resolve/main/examples/7.png" in commit.files["README.md"].decode()

        card = ModelCard(commit.files["README.md"].decode())
        seven = next(entry for entry in card.data.to_dict()["widget"] if entry["src"].endswith("/examples/7.png"))
        picture = staged_repo[0] / "examples" / "7.png"
        loaded = subprocess.run(
            [sys.executable, "-c", LOAD_FROM_HUB, str(picture)], cwd=tmp_path, capture_output=True, text=True,
            env={**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "reader"), "HF_TOKEN": "hf_alice"},
        )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    root_label, remote_label, remote_module = json.loads(loaded.stdout.splitlines()[-1])
    assert root_label == remote_label == seven["output"][0]["label"]
    assert remote_module.startswith("transformers_modules.")


@pytest.mark.slow
def test_upload_honours_revision_pull_request_and_private(staged_repo):
    folder, _ = staged_repo
    with FakeHub(ALICE) as hub:
        api = HfApi(endpoint=hub.url, token="hf_alice")
        url = upload(api, folder, "acme/mnist-vit", private=True, revision="v2", create_pr=True, commit_message="v2")
        repo = hub.repos["acme/mnist-vit"]
        assert repo.private
        assert url == f"{hub.url}/acme/mnist-vit/discussions/1"
        (commit,) = hub.commits
        assert (commit.revision, commit.create_pr, commit.summary) == ("v2", True, "v2")
        assert set(commit.files) == EXPECTED_FILES | UPLOAD_EXAMPLES
        assert repo.files("v2") == {} and set(repo.files("refs/pr/1")) == EXPECTED_FILES | UPLOAD_EXAMPLES  # a PR leaves v2 as it was

        url = upload(api, folder, "acme/mnist-vit", private=False, revision="v2", create_pr=False, commit_message="v2")
        assert url == f"{hub.url}/acme/mnist-vit/tree/v2"
        assert set(repo.files("v2")) == EXPECTED_FILES | UPLOAD_EXAMPLES and repo.files("main") == {}


# --- refusals ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_wrong_token_is_refused_before_anything_is_built(trained_run, tmp_path):
    with FakeHub(ALICE) as hub:
        result = run_push(
            "--model_dir", str(trained_run), "--repo_id", "alice/mnist-vit",
            home=tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN="hf_wrong",
        )
    assert_refused(result, "rejected your token (401 Unauthorized)", "hf auth login", "--token")
    assert api_calls(hub) == [("GET", "/api/whoami-v2")]


@pytest.mark.slow
def test_no_login_is_refused(trained_run, tmp_path):
    result = run_push("--model_dir", str(trained_run), "--repo_id", "alice/mnist-vit", home=tmp_path)
    assert_refused(result, "not logged in", "hf auth login", "--token")


@pytest.mark.slow
def test_a_repo_the_token_cannot_see_gives_404(staged_repo):
    """A private repo of alice's organisation that her account has no access to: the Hub says 404."""
    with FakeHub(ALICE, repos={"acme/secret": Repo(private=True, members={"carol"})}) as hub:
        refusal = r"acme/secret was not found, or your token cannot see it \(404 Not Found\)"
        with pytest.raises(UserError, match=refusal):
            upload(HfApi(endpoint=hub.url, token="hf_alice"), staged_repo[0], "acme/secret", False, None, False, "m")
    assert hub.commits == []


def test_a_namespace_the_account_does_not_own_is_refused():
    with FakeHub(ALICE) as hub:
        with pytest.raises(UserError, match=r"logged in as alice, who cannot publish under 'bob'.*'alice', 'acme'"):
            check_write_access(HfApi(endpoint=hub.url, token="hf_alice"), "bob/mnist-vit")
    assert api_calls(hub) == [("GET", "/api/whoami-v2")]


def test_a_read_only_token_is_refused():
    with FakeHub({"hf_read": Account("alice", role="read")}) as hub:
        with pytest.raises(UserError, match="read-only"):
            check_write_access(HfApi(endpoint=hub.url, token="hf_read"), "alice/mnist-vit")


def test_no_network_is_refused():
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=f"Cannot reach the Hugging Face Hub at {endpoint}.*network connection"):
        check_write_access(HfApi(endpoint=endpoint, token="hf_alice"), "alice/mnist-vit")


@pytest.mark.slow
@pytest.mark.parametrize("missing", MODEL_FILES)
def test_a_folder_without_a_model_is_refused_naming_what_is_missing(trained_run, tmp_path, capsys, missing):
    partial = tmp_path / "run"
    shutil.copytree(trained_run, partial, ignore=shutil.ignore_patterns(missing, "checkpoint-*"))
    status = entry_point_status("--model_dir", str(partial), "--repo_id", "alice/mnist-vit", "--dry_run")
    error = capsys.readouterr().err
    assert status == 2 and "Traceback" not in error
    assert error.startswith(f"error: {partial} is not a trained mnist-vit model: it lacks {missing}.")


@pytest.mark.slow
def test_a_model_that_never_trained_is_refused(trained_run, tmp_path, capsys):
    untrained = tmp_path / "run"
    shutil.copytree(trained_run, untrained, ignore=shutil.ignore_patterns("checkpoint-*"))
    state = json.loads((untrained / "trainer_state.json").read_text())
    (untrained / "trainer_state.json").write_text(json.dumps({**state, "global_step": 0}))
    status = entry_point_status("--model_dir", str(untrained), "--repo_id", "alice/mnist-vit", "--dry_run")
    error = capsys.readouterr().err
    assert status == 2 and "Traceback" not in error
    assert "says the model never trained (0 optimizer steps)" in error


@pytest.mark.slow
def test_the_shipped_checkpoint_publishes_and_its_card_says_what_it_lacks(shipped_model, publishing_data, tmp_path, capsys):
    folder = tmp_path / "repo"
    status = entry_point_status(
        "--model_dir", str(shipped_model), "--repo_id", "alice/mnist-vit", "--data_dir", str(publishing_data),
        "--dry_run", "--staging_dir", str(folder),
    )
    assert status == 0, capsys.readouterr().err[-3000:]
    assert files_in(folder) == EXPECTED_FILES
    card = ModelCard.load(folder / "README.md")
    test_results = json.loads((shipped_model / "test_results.json").read_text())
    assert f"{test_results['test_accuracy']:.2%} accuracy on MNIST's test split" in card.text
    assert "optimizer steps not recorded: no `trainer_state.json`" in card.text
    # without --root_model the root is the same model, which reads MNIST-like pictures only, and says so
    assert "The root holds this model" in card.text and "white digit on a black background" in card.text


@pytest.mark.slow
def test_a_run_with_training_curves_publishes_them(publishing_data, tmp_path, capsys):
    folder = tmp_path / "repo"
    status = entry_point_status(
        "--model_dir", str(ROOT_MODEL), "--repo_id", "alice/mnist-vit", "--data_dir", str(publishing_data),
        "--dry_run", "--staging_dir", str(folder),
    )
    assert status == 0, capsys.readouterr().err[-3000:]
    assert files_in(folder) == EXPECTED_FILES | {"training_curves.png"}
    assert (folder / "training_curves.png").read_bytes() == (ROOT_MODEL / "training_curves.png").read_bytes()
    card = ModelCard.load(folder / "README.md").text
    assert "![training curves](training_curves.png)" in card and "![reliability diagram](reliability_diagram.png)" in card


@pytest.mark.slow
def test_a_bare_model_folder_publishes_with_a_card_that_says_what_it_cannot_know(shipped_model, publishing_data, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in MODEL_FILES:
        shutil.copy(shipped_model / name, bare / name)
    folder = tmp_path / "repo"
    status = entry_point_status(
        "--model_dir", str(bare), "--repo_id", "alice/mnist-vit", "--data_dir", str(publishing_data),
        "--dry_run", "--staging_dir", str(folder),
    )
    assert status == 0, capsys.readouterr().err[-3000:]
    assert files_in(folder) == EXPECTED_FILES - {"confusion_matrix.png", "misclassified.png", "reliability_diagram.png"}
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results is None
    assert "its test accuracy was not recorded" in card.text
    assert "Not recorded: the published folder had no `train_args.json`" in card.text
    assert "Not recorded: the published folder had no `test_results.json`" in card.text
    assert "confusion_matrix.png" not in card.text
    assert "The scores are uncalibrated" in card.text


@pytest.mark.slow  # a fresh Python process: seconds
def test_publishing_does_not_import_training():
    """Publishing is a room above training's: push_to_hub.py loads no Trainer wiring."""
    code = "import sys, push_to_hub; print(' '.join(name for name in sys.modules if name.startswith('mnist_vit')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = result.stdout.split()
    assert "mnist_vit.hub_upload" in imported and "mnist_vit.training" not in imported


# --- a second model at the root (--root_model) -----------------------------------------------------------


@pytest.mark.slow
def test_the_root_model_is_at_the_root_and_the_run_in_remote_code(staged_repo, shipped_model):
    root_staged = staged_repo[0]
    at_root = load_vit_export(root_staged).classifier.weight
    assert torch.equal(at_root, MnistViTForImageClassification.from_pretrained(ROOT_MODEL).classifier.weight)
    in_remote_code = MnistViTForImageClassification.from_pretrained(root_staged / "remote_code").classifier.weight
    assert torch.equal(in_remote_code, MnistViTForImageClassification.from_pretrained(shipped_model).classifier.weight)
    assert not torch.equal(at_root, in_remote_code)
    # transformers.js reads one mean and std per channel
    processor = json.loads((root_staged / "preprocessor_config.json").read_text())
    assert len(processor["image_mean"]) == 3 and len(processor["image_std"]) == 3


@pytest.mark.slow
def test_the_card_shows_a_drawing_and_a_photo_and_says_which_model_is_at_the_root(staged_repo):
    root_staged = staged_repo[0]
    card = ModelCard.load(root_staged / "README.md")
    widget = {entry["src"].rsplit("/", 1)[1]: entry for entry in card.data.to_dict()["widget"]}
    assert set(widget) == {f"{digit}.png" for digit in range(10)} | {"drawing.png", "photo.jpg"}
    assert all(len(entry["output"]) == 3 for entry in widget.values())
    drawing = np.asarray(Image.open(root_staged / "examples" / "drawing.png").convert("L"))
    assert np.median(drawing) > 200 and drawing.min() < 60  # black ink on white
    with Image.open(root_staged / "examples" / "photo.jpg") as photo:
        assert photo.format == "JPEG" and max(photo.size) >= 800

    text = card.text
    assert "\n## The model at the root\n" in text and "(`mnist-vit-root`)" in text
    measured = json.loads((ROOT_MODEL / "stock_pipeline_results.json").read_text())
    for name, result in measured.items():
        assert f"| {name} | {result['pictures']:,} | {result['accuracy']:.2%} |" in text
    assert "`onnx/model_quantized.onnx` (8-bit" in text
    assert "white digit on a black background" not in text  # the root reads more than MNIST-like pictures


@pytest.mark.slow
def test_the_check_runs_the_onnx_files(staged_repo, staged, tmp_path, monkeypatch):
    """The shipped model's ONNX files beside the root model's weights: they misread the drawing or the photo."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    folder = shutil.copytree(staged_repo[0], tmp_path / "repo")
    shutil.rmtree(folder / "onnx")
    shutil.copytree(staged / "onnx", folder / "onnx")
    with pytest.raises(UserError, match=r"running the root's ONNX files with onnxruntime failed: onnx/model.onnx labels"):
        validate_staged_folder(folder)


@pytest.mark.slow
def test_a_root_model_whose_onnx_disagrees_is_refused_and_nothing_is_uploaded(shipped_model, publishing_data, tmp_path):
    """Logits 10,000 times larger: float32 rounding in the ONNX graph then moves them by far more than 1e-4."""
    overconfident = MnistViTForImageClassification.from_pretrained(ROOT_MODEL)
    with torch.no_grad():
        overconfident.classifier.weight.mul_(1e4)
        overconfident.classifier.bias.mul_(1e4)
    overconfident.save_pretrained(tmp_path / "root")
    MnistViTImageProcessor.from_pretrained(ROOT_MODEL).save_pretrained(tmp_path / "root")
    with FakeHub(ALICE) as hub:
        result = run_push(
            "--model_dir", str(shipped_model), "--root_model", str(tmp_path / "root"), "--repo_id", "alice/mnist-vit",
            "--data_dir", str(publishing_data), home=tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN="hf_alice",
        )
    assert_refused(result, "disagrees with torch, so it was not written", "differ from torch's by up to")
    assert hub.commits == [] and "alice/mnist-vit" not in hub.repos


def test_a_missing_root_model_is_refused_naming_the_flag(shipped_model, tmp_path, capsys):
    status = entry_point_status(
        "--model_dir", str(shipped_model), "--root_model", str(tmp_path / "nowhere"), "--repo_id", "alice/mnist-vit",
        "--dry_run",
    )
    error = capsys.readouterr().err
    assert status == 2 and "Traceback" not in error
    assert error.startswith(f"error: --root_model {tmp_path / 'nowhere'} does not exist")
