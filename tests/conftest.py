"""Shared fixtures, and the environment every test runs in: set here, before anything imports huggingface_hub."""

import atexit
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

# The tests' caches live in one temporary folder per session, removed at its end, so that nothing is written
# to ~/.cache and a user's shell (HF_HUB_OFFLINE=1, a token, another endpoint or cache) changes no outcome.
# huggingface_hub, datasets and evaluate read these variables when they are imported.
SESSION_FOLDER = Path(tempfile.mkdtemp(prefix="mnist-vit-tests-"))
atexit.register(shutil.rmtree, SESSION_FOLDER, ignore_errors=True)
for variable in (
    "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_EVALUATE_OFFLINE", "HF_ENDPOINT", "HF_TOKEN",
    "HF_TOKEN_PATH", "HF_STORED_TOKENS_PATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_XET_CACHE",
    "HF_ASSETS_CACHE", "HF_MODULES_CACHE", "HF_METRICS_CACHE", "HF_EVALUATE_CACHE", "TRANSFORMERS_CACHE",
):
    os.environ.pop(variable, None)
os.environ.update(
    HF_HOME=str(SESSION_FOLDER / "huggingface"),
    HF_DATASETS_CACHE=str(SESSION_FOLDER / "huggingface" / "datasets"),
    XDG_CACHE_HOME=str(SESSION_FOLDER / "cache"),
    MPLCONFIGDIR=str(SESSION_FOLDER / "matplotlib"),
)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mnist_vit import MnistViTForImageClassification, MnistViTImageProcessor  # noqa: E402
from mnist_vit.data import read_idx  # noqa: E402
from mnist_vit.errors import exit_status  # noqa: E402
from mnist_vit.export import export_to_vit  # noqa: E402
from mnist_vit.inference import SHIPPED_MODEL  # noqa: E402
from mnist_vit.onnx_export import stage_onnx  # noqa: E402

MNIST_DIR = Path(os.environ.get("MNIST_DIR", Path(__file__).resolve().parents[2] / "shared" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return MNIST_DIR


@pytest.fixture(scope="session")
def publishing_data(tmp_path_factory) -> Path:
    """A --data_dir for runs that publish: MNIST's first 1,000 training and 1,000 test digits (the widget examples
    and the ONNX check come from the test digits; checking all 10,000 took half a minute of each publishing run)."""
    folder = tmp_path_factory.mktemp("publishing_data")
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        write_idx(folder / name, read_idx(MNIST_DIR / name)[:1000], compress=True)
    return folder


@pytest.fixture(scope="session")
def mnist_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The first 32 MNIST test digits: images uint8 (32, 28, 28) and labels uint8 (32,)."""
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:32].copy()  # read_idx gives read-only arrays
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:32]
    return images, labels


@pytest.fixture(scope="session")
def mnist_train_digits() -> tuple[np.ndarray, np.ndarray]:
    """The first 64 MNIST training digits and their labels."""
    images = read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")[:64].copy()
    labels = read_idx(MNIST_DIR / "train-labels-idx1-ubyte.gz")[:64]
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in IDX layout: 00 00 08 ndim, big-endian dimensions, data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def ink_on_transparency(ink: np.ndarray, ink_level: int = 0) -> Image.Image:
    """What a drawing canvas exports: ink of one colour (black by default) whose opacity is `ink` (uint8),
    over fully transparent pixels."""
    return Image.fromarray(np.dstack([np.full_like(ink, ink_level)] * 3 + [ink]))


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the entry points (train.py, push_to_hub.py) import as modules
QUICK_RUN_FLAGS = [
    "--max_train_samples", "2000", "--max_eval_samples", "200", "--validation_size", "500",
    "--num_train_epochs", "1", "--per_device_train_batch_size", "64", "--disable_tqdm", "true",
]


def with_mnist(flags: tuple[str, ...]) -> list[str]:
    """train.py's FLAGS with `--data_dir <MNIST>` after them, unless they name a --data_dir."""
    return [*flags] if "--data_dir" in flags else [*flags, "--data_dir", str(MNIST_DIR)]


def run_train(*flags: str, cwd: Path = REPO_ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python train.py FLAGS` (`with_mnist`) in a subprocess, as a user runs it."""
    command = [sys.executable, str(REPO_ROOT / "train.py"), *with_mnist(flags)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


# A small model for tests of train.py's behaviour, not of its accuracy
TINY_MODEL = ["--hidden_size", "64", "--num_hidden_layers", "2", "--intermediate_size", "256"]


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-3000:]


def train_refusal(capsys: pytest.CaptureFixture, *flags: str) -> str:
    """`python train.py FLAGS` (`with_mnist`) for a run that must be refused:
    its `main` in this process, as the command line runs it (a fresh process costs seconds of imports; the
    command line's own error path is tested in one). Checks the exit status and that stderr ends with one sentence
    (before it: progress bars, when the refusal comes after the session's first read of MNIST); returns it."""
    import train  # the entry point, from REPO_ROOT (on sys.path: see above)

    status = exit_status(lambda: train.main(with_mnist(flags)))
    error = capsys.readouterr().err
    assert status == 2 and "Traceback" not in error, error
    last_line = error.strip().splitlines()[-1]
    assert last_line.startswith("error: "), error
    return last_line


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The `--output_dir` of a real (one epoch, 2,000 digits) train.py run: model, processor, code, report."""
    output_dir = tmp_path_factory.mktemp("trained_run") / "run"
    result = run_train(*QUICK_RUN_FLAGS, "--output_dir", str(output_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The checkpoint that predict.py and app.py load by default."""
    assert (SHIPPED_MODEL / "model.safetensors").is_file(), f"The shipped checkpoint is missing from {SHIPPED_MODEL}."
    return SHIPPED_MODEL


# The shipped checkpoint exported as the plain-ViT root, with its ONNX files (test_onnx_export, test_browser_page).

TEST_DIGITS = 1000


@pytest.fixture(scope="module")
def test_pictures() -> list[Image.Image]:
    """The first 1,000 MNIST test digits, as the publisher hands them over (the test split's PIL images)."""
    return [Image.fromarray(image) for image in read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:TEST_DIGITS]]


@pytest.fixture(scope="module")
def root_folder(shipped_model, tmp_path_factory):
    """The shipped checkpoint exported as a plain ViT: what push_to_hub.py puts at the repo's root."""
    folder = tmp_path_factory.mktemp("root")
    vit, vit_processor = export_to_vit(
        MnistViTForImageClassification.from_pretrained(shipped_model).eval(),
        MnistViTImageProcessor.from_pretrained(shipped_model),
    )
    vit.save_pretrained(folder)
    vit_processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def staged(root_folder, test_pictures):
    stage_onnx(root_folder, test_pictures)
    return root_folder
