"""A trained run's folder, checked and loaded for publishing: the model, its image processor and the records beside it.

    run = load_run(check_run_dir("runs/mnist-vit"))

Any folder with a trained mnist-vit model and its image processor will do (a train.py `--output_dir`, the
shipped `checkpoints/mnist-vit`); each record train.py writes beside the model may be missing, and the card
then says what it cannot know.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

from .configuration_mnist_vit import MnistViTConfig
from .errors import UserError
from .image_processing_mnist_vit import MnistViTImageProcessor
from .inference import DAMAGED_WEIGHTS, first_line
from .modeling_mnist_vit import MnistViTForImageClassification

MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
FIGURES = ("confusion_matrix.png", "misclassified.png", "training_curves.png", "reliability_diagram.png")
# What bench/bench_root.py --save measures of a root model through the stock pipeline, beside its weights.
STOCK_PIPELINE_RESULTS = "stock_pipeline_results.json"


@dataclass
class TrainedRun:
    """A folder with a trained model, loaded: the model, its processor and what the card reports (None: the
    folder does not record it)."""

    path: Path
    model: MnistViTForImageClassification
    image_processor: MnistViTImageProcessor
    train_args: dict | None
    train_results: dict | None  # the training time, and the temperature when the run calibrated its scores
    trainer_state: dict | None
    eval_results: dict | None
    test_results: dict | None
    stock_pipeline_results: dict | None  # a root model's, from bench/bench_root.py --save
    figures: list[str]


def check_run_dir(model_dir: str | os.PathLike, flag: str = "--model_dir") -> Path:
    """Refuse, naming why (and the `flag` that named it), a folder without a trained mnist-vit model and its
    image processor."""
    path = Path(model_dir)
    if path.is_file():
        raise UserError(f"{flag} {path} is a file; pass the folder with the trained model, such as a train.py --output_dir.")
    if not path.is_dir():
        raise UserError(f"{flag} {path} does not exist; pass a folder with a trained model, such as a train.py --output_dir.")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise UserError(
            f"{path} is not a trained mnist-vit model: it lacks {', '.join(missing)}. "
            "Pass a folder with a trained model and its image processor, such as a train.py --output_dir."
        )
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as err:  # not JSON, or JSON but not an object
        raise UserError(f"{path / 'config.json'} is damaged ({err}): copy the model again.") from None
    if model_type != MnistViTConfig.model_type:
        raise UserError(f"{path} holds a {model_type!r} model, not an mnist-vit one (model_type 'mnist_vit').")
    state = path / "trainer_state.json"
    if state.is_file() and json.loads(state.read_text()).get("global_step") == 0:
        raise UserError(
            f"{state} says the model never trained (0 optimizer steps): its weights are random. "
            "Publish a run that trained, e.g. with --num_train_epochs above 0."
        )
    return path


def load_run(path: Path) -> TrainedRun:
    def read_json(name: str) -> dict | None:
        return json.loads((path / name).read_text()) if (path / name).is_file() else None

    try:
        model = MnistViTForImageClassification.from_pretrained(path).eval()
    except SafetensorError as err:  # a truncated or empty weights file
        raise UserError(DAMAGED_WEIGHTS.format(path=path, error=first_line(err))) from None
    return TrainedRun(
        path=path,
        model=model,
        image_processor=MnistViTImageProcessor.from_pretrained(path),
        train_args=read_json("train_args.json"),
        train_results=read_json("train_results.json"),
        trainer_state=read_json("trainer_state.json"),
        eval_results=read_json("eval_results.json"),
        test_results=read_json("test_results.json"),
        stock_pipeline_results=read_json(STOCK_PIPELINE_RESULTS),
        figures=[figure for figure in FIGURES if (path / figure).is_file()],
    )
