"""Staging the Hub repo in a local folder: every file of the one commit, written and then loaded as its users will.

The repo:

    README.md                     the model card, built from the run's own files (model_card.py)
    config.json                   a plain `ViTForImageClassification` (`model_type: vit`) taking RGB, with a
    model.safetensors             stock `ViTImageProcessor` (see export.py): the widget, Inference Providers and
    preprocessor_config.json      Endpoints, transformers.js and ONNX exporters serve it, no remote code;
                                  the run's model, or with `root` a second one trained to read uploads
                                  through that processor (recipes/root.yaml)
    onnx/model.onnx               the root as ONNX for transformers.js: fp32 and 8-bit (onnx_export.py),
    onnx/model_quantized.onnx     checked against torch on the test digits
    examples/0.png ... 9.png      one test digit per class: the card's widget examples (widget_examples.py); with
    examples/drawing.png          `root`, also a drawing and a photo of test digits that both variants read right
    examples/photo.jpg
    confusion_matrix.png ...      the run's figures it has (run_folder.FIGURES: also misclassified.png,
                                  training_curves.png, reliability_diagram.png)
    remote_code/                  our model, its image processor and their code (`trust_remote_code=True`):
                                  MNIST-style preprocessing of any picture of a digit

The remote-code variant is a subfolder, not a branch, so that one commit publishes both and a pull
request carries both. transformers 5.24 reads `subfolder` for the config and the weights but fetches
`auto_map`'s code from the repo root, so `remote_code/`'s `auto_map` names its files with the folder
(`"remote_code/modeling_mnist_vit.MnistViTForImageClassification"`): the dynamic-module loader fetches
that path and the files it imports beside it. The variant therefore loads from the repo (a Hub id or a
local copy of the whole repo) with `subfolder="remote_code"`, not from the subfolder alone.

`validate_staged_folder` loads the staged folder in a fresh process that cannot import this package
(check_hub_folder.py); nothing is uploaded unless it passes.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets

from . import check_hub_folder
from .check_hub_folder import EXAMPLES_FOLDER, REMOTE_CODE_FOLDER
from .data import MNIST_HUB_NAME, open_dataset
from .errors import UserError
from .export import export_to_vit
from .model_card import build_model_card
from .onnx_export import stage_onnx
from .run_folder import TrainedRun
from .widget_examples import pick_upload_examples, pick_widget_examples


def load_test_split(data_dir: str | os.PathLike | None) -> datasets.Dataset:
    """MNIST's test digits, for the widget examples and the ONNX check: from `data_dir`'s IDX files, else the Hub."""
    return open_dataset(MNIST_HUB_NAME, data_dir)["test"]


def name_code_with_folder(config_file: Path, folder: str) -> None:
    """Point `auto_map` at `folder/<file>`: transformers fetches remote code from the repo root."""
    config = json.loads(config_file.read_text())
    config["auto_map"] = {auto_class: f"{folder}/{reference}" for auto_class, reference in config["auto_map"].items()}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def stage_remote_code(run: TrainedRun, folder: Path) -> None:
    """Our model, processor and code: `save_pretrained` copies the code files and writes `auto_map`."""
    run.model.save_pretrained(folder)
    run.image_processor.save_pretrained(folder)
    for config_file in ("config.json", "preprocessor_config.json"):
        name_code_with_folder(folder / config_file, folder.name)


def stage(
    run: TrainedRun, root: TrainedRun | None, repo_id: str, revision: str | None, test_split: datasets.Dataset,
    folder: Path,
) -> None:
    """Write the repo's files, and nothing else, to `folder`: `root` (None: `run`) exported at the root with its
    ONNX files, `run` in remote_code/."""
    vit, vit_processor = export_to_vit((root or run).model, (root or run).image_processor)
    vit.save_pretrained(folder)
    vit_processor.save_pretrained(folder)
    onnx = stage_onnx(folder, list(test_split["image"]))
    stage_remote_code(run, folder / REMOTE_CODE_FOLDER)
    examples = pick_widget_examples(vit, vit_processor, run, test_split)
    if root is not None:  # a root trained for uploads shows them too
        examples += pick_upload_examples(vit, vit_processor, run, test_split)
    (folder / EXAMPLES_FOLDER).mkdir()
    for example in examples:
        (folder / EXAMPLES_FOLDER / example.file).write_bytes(example.content)
    for figure in run.figures:
        shutil.copyfile(run.path / figure, folder / figure)
    build_model_card(run, root, onnx, repo_id, revision, examples).save(folder / "README.md")


def validate_staged_folder(folder: Path) -> None:
    """Load `folder` as its users will (see check_hub_folder.py); refuse it, saying what failed, if that fails.

    The check runs from a copy in an empty folder: a script's folder comes first on `sys.path`, and this
    package's folder there would make its modules importable.
    """
    with tempfile.TemporaryDirectory() as elsewhere:
        script = shutil.copy(check_hub_folder.__file__, elsewhere)
        environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
        result = subprocess.run(
            [sys.executable, script, str(folder.resolve())], cwd=elsewhere, env=environment,
            capture_output=True, text=True,
        )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"the check exited with status {result.returncode}"
        raise UserError(f"The staged repo folder did not pass its check, so nothing was uploaded: {reason}")


@contextmanager
def staging_folder(staging_dir: str | os.PathLike | None) -> Iterator[Path]:
    """`staging_dir` (new or empty, kept afterwards), or a temporary folder."""
    if staging_dir is None:
        with tempfile.TemporaryDirectory() as folder:
            yield Path(folder)
        return
    folder = Path(staging_dir)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"--staging_dir {folder} is not an empty folder; pass a new or empty one.")
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
