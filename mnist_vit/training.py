"""Training with the Hugging Face `Trainer`: arguments, model, metrics, resume rules and the final report.

`train.py` parses the three argument dataclasses here and `data.Augmentation` (or a JSON/YAML recipe) and calls
`run`. The Trainer brings everything else: one CPU, one GPU, or many processes under `accelerate launch`
or `torchrun`; bf16, `torch.compile`, logging to TensorBoard; checkpoints and resume. The flags of
transformers' `examples/pytorch/image-classification/run_image_classification.py` mean the same here.
"""

import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from huggingface_hub import HfApi, get_token
from safetensors import SafetensorError
from scipy.special import softmax
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    EarlyStoppingCallback,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from . import distillation, hub_upload
from .configuration_mnist_vit import MnistViTConfig
from .errors import UserError
from .data import (
    MNIST_HUB_NAME,
    Augmentation,
    InMemorySplit,
    collate_batch,
    limit_samples,
    load_image_folders,
    open_dataset,
    split_train_validation,
    to_pixel_arrays,
)
from .calibration import fit_temperature, fold_temperature
from .image_processing_mnist_vit import MnistViTImageProcessor
from .inference import DAMAGED_WEIGHTS, check_model_location, first_line
from .modeling_mnist_vit import MnistViTForImageClassification
from .report import expected_calibration_error, load_metric, write_report, write_training_curves
from .transfer import StockModelInput
from .typed_digits import typed_digits_split

logger = logging.get_logger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Fine-tune (or evaluate) a trained model, a folder or a Hub repo id: ours, or any "
                  "image-classification model (google/vit-base-patch16-224, microsoft/resnet-50, ...)."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Give --model_name_or_path a new head when its labels differ from the data's."}
    )
    model_revision: str = field(default="main", metadata={"help": "The branch, tag or commit of a Hub model."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the code a Hub model carries (only for repos you trust)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are kept."})
    patch_size: int | None = field(default=None, metadata={"help": "A new model's patch side in pixels (default 7)."})
    hidden_size: int | None = field(default=None, metadata={"help": "A new model's hidden size (default 128)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "A new model's layers (default 4)."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "A new model's heads per layer (default 4)."})
    intermediate_size: int | None = field(default=None, metadata={"help": "A new model's MLP size (default 512)."})
    hidden_dropout_prob: float | None = field(default=None, metadata={"help": "A new model's dropout (default 0)."})
    attention_probs_dropout_prob: float | None = field(
        default=None, metadata={"help": "A new model's attention dropout (default 0)."}
    )

    def config_overrides(self) -> dict:
        names = ("patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        names += ("hidden_dropout_prob", "attention_probs_dropout_prob")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    dataset_name: str = field(default=MNIST_HUB_NAME, metadata={"help": "A Hub image-classification dataset."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The configuration of --dataset_name."})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "A folder with MNIST's four IDX files (gzipped or not), or an image folder (one folder "
                  "per class under train/ and test/ or validation/; without test/ the report is on validation)."},
    )
    train_dir: str | None = field(
        default=None, metadata={"help": "Training images in one folder per class (instead of --data_dir)."}
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "Validation images in one folder per class, with --train_dir; the report is on them."}
    )
    image_column_name: str | None = field(default=None, metadata={"help": "The image column (default: the first)."})
    label_column_name: str | None = field(default=None, metadata={"help": "The label column (default: the first)."})
    validation_size: float = field(
        default=5000,
        metadata={"help": "Examples held out of train for validation: a count, or a fraction below 1. "
                  "--train_val_split is the same flag.", "aliases": ["--train_val_split"]},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N examples only (--typed_digits come on top)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Validate and test on N examples only."})
    typed_digits: int = field(
        default=0,
        metadata={"help": "Add N digits typed in the installed fonts (not the benchmarks' DejaVu, STIX and Computer "
                  "Modern) to the training split: the ten in turn, black on white at random sizes."},
    )


def new_default(name: str, value):
    """A `TrainingArguments` field with this project's default, keeping its help text for --help."""
    return field(default=value, metadata=TrainingArguments.__dataclass_fields__[name].metadata)


@dataclass
class MnistViTTrainingArguments(TrainingArguments):
    """`TrainingArguments` with this project's defaults: the original model's 10-epoch run, done well."""

    output_dir: str = field(default="runs/mnist-vit", metadata={"help": "Where checkpoints and results go."})
    num_train_epochs: float = new_default("num_train_epochs", 10.0)
    per_device_train_batch_size: int = new_default("per_device_train_batch_size", 128)
    per_device_eval_batch_size: int = new_default("per_device_eval_batch_size", 512)
    learning_rate: float = new_default("learning_rate", 1e-3)
    weight_decay: float = new_default("weight_decay", 0.05)
    warmup_steps: float = new_default("warmup_steps", 0.05)
    lr_scheduler_type: str = new_default("lr_scheduler_type", "cosine")
    label_smoothing_factor: float = new_default("label_smoothing_factor", 0.1)
    eval_strategy: str = new_default("eval_strategy", "epoch")
    save_strategy: str = new_default("save_strategy", "epoch")
    save_total_limit: int | None = new_default("save_total_limit", 2)
    load_best_model_at_end: bool = new_default("load_best_model_at_end", True)
    metric_for_best_model: str | None = new_default("metric_for_best_model", "accuracy")
    logging_steps: float = new_default("logging_steps", 50)
    remove_unused_columns: bool = new_default("remove_unused_columns", False)  # True wraps the collator, which takes InMemorySplit's whole batches
    # With none of the three given, train.py trains, evaluates and tests; with any, only those.
    do_train: bool = field(default=False, metadata={"help": "Train (with any of --do_*: only what they name)."})
    do_eval: bool = field(default=False, metadata={"help": "Evaluate on the validation split."})
    do_predict: bool = field(
        default=False,
        metadata={"help": "Write the report on the test split. --eval_only is the same flag: alone, it reports on "
                  "--model_name_or_path.", "aliases": ["--eval_only"]},
    )
    teacher_epochs: int = field(
        default=0,
        metadata={"help": "Distillation: first train a small CNN teacher for N epochs on the same digits and "
                  "augmentation, then train the model on the labels and the teacher's predictions (0: no teacher)."},
    )
    teacher_model: str | None = field(
        default=None,
        metadata={"help": "Distillation from a trained mnist-vit model (a folder or Hub id) instead of a CNN: it "
                  "reads each digit as it is before --upload_augmentation, and the model learns to read the "
                  "upload made of it the same way."},
    )
    # Run modes: stop early, or search hyperparameters instead of one run.
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without a better validation accuracy."}
    )
    hp_search_trials: int = field(
        default=0, metadata={"help": "Search learning rate, weight decay and label smoothing with N Optuna trials."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh in an --output_dir holding a run (finished or not): its files are replaced. "
                  "Files train.py did not write are never touched."},
    )
    hub_token: str | None = field(
        default=None,
        metadata={"help": "A Hugging Face token, to download gated models and datasets and to --push_to_hub "
                  "(default: the one saved by `hf auth login`). --token is the same flag.", "aliases": ["--token"]},
    )

    def __post_init__(self):
        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for; the DataLoader would warn on every pass
        # before TrainingArguments sets do_eval for any eval_strategy
        self.steps_asked = (self.do_train, self.do_eval, self.do_predict)
        super().__post_init__()

    def steps(self) -> tuple[bool, bool, bool]:
        """(train, evaluate, predict): those asked for with --do_*, or all three when none is."""
        return self.steps_asked if any(self.steps_asked) else (True, True, True)


class AugmentingTrainer(Trainer):
    """A Trainer that augments each training batch after it reached the model's device, then (for a stock
    model) makes every batch that model's input (`transfer.StockModelInput`). With a `teacher`, the training
    loss is `distillation.distillation_loss`: the labels and the teacher's predictions for the augmented batch,
    read before `--upload_augmentation` makes it uploads."""

    def __init__(
        self, *args, augmentation: Augmentation, model_input: Callable | None = None,
        teacher: distillation.InferenceTeacher | distillation.ModelTeacher | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.augmentation = augmentation
        self.model_input = model_input
        self.teacher = teacher
        if teacher is not None:
            self.loss_is_scaled_for_ga = False  # distillation_loss is a mean over the batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pixel_values = inputs["pixel_values"]
        distilling = model.training and self.teacher is not None
        if model.training:
            pixel_values = self.augmentation.moved(pixel_values)
            if distilling:
                with torch.no_grad():
                    teacher_logits = self.teacher(pixel_values)  # the digit before it is made an upload
            pixel_values = self.augmentation.as_uploads(pixel_values)
        if self.model_input is not None:
            pixel_values = self.model_input(pixel_values)
        if distilling:
            outputs = model(pixel_values=pixel_values)
            loss = distillation.distillation_loss(outputs.logits, teacher_logits, inputs["labels"], self.args.label_smoothing_factor)
            return (loss, outputs) if return_outputs else loss
        inputs = {**inputs, "pixel_values": pixel_values}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


def data_source(data_args: DataArguments) -> str:
    return data_args.train_dir or data_args.data_dir or data_args.dataset_name


def load_splits(data_args: DataArguments, cache_dir: str | None, token: str | None, train: bool) -> datasets.DatasetDict:
    """The train (if `train`), validation and (if the data has one) test splits, limited as the flags ask."""
    if data_args.train_dir is not None:
        if data_args.data_dir is not None:
            raise UserError("Pass --data_dir or --train_dir (with --validation_dir), not both.")
        try:
            dataset = load_image_folders(data_args.train_dir, data_args.validation_dir, cache_dir)
        except (FileNotFoundError, ValueError) as err:
            raise UserError(str(err)) from err
    else:
        if data_args.validation_dir is not None:
            raise UserError("--validation_dir goes with --train_dir: pass both, or --data_dir alone.")
        dataset = open_dataset(
            data_args.dataset_name, data_args.data_dir, cache_dir=cache_dir, token=token,
            dataset_config_name=data_args.dataset_config_name, image_column_name=data_args.image_column_name,
            label_column_name=data_args.label_column_name,
        )
    size = data_args.validation_size
    dataset = split_train_validation(dataset, int(size) if size >= 1 else size, seed=42)
    dataset = limit_samples(dataset, data_args.max_train_samples, data_args.max_eval_samples)
    if not train:  # evaluating or testing only: preparing the training images would take minutes for nothing
        del dataset["train"]
    elif data_args.typed_digits:
        typed = typed_digits_split(data_args.typed_digits, dataset["train"].features, seed=0)
        dataset["train"] = datasets.concatenate_datasets([dataset["train"], typed])
    return dataset


def label_maps(label_names: list[str]) -> dict:
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}


def hub_options(model_args: ModelArguments, token: str | None) -> dict:
    """What `from_pretrained` needs to fetch --model_name_or_path as the flags say."""
    return {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": token,
            "trust_remote_code": model_args.trust_remote_code}


def label_names_of(config) -> list[str]:
    return [config.id2label[index] for index in sorted(config.id2label)]


def build_model(model_args: ModelArguments, label_names: list[str], token: str | None = None) -> PreTrainedModel:
    """A new model of the requested size, or --model_name_or_path (ours or any image-classification model),
    with a new head for the data's labels if --ignore_mismatched_sizes allows it."""
    if model_args.model_name_or_path is None:
        try:
            config = MnistViTConfig(**model_args.config_overrides(), **label_maps(label_names))
        except ValueError as err:
            raise UserError(str(err)) from err
        return MnistViTForImageClassification(config)
    path, options = model_args.model_name_or_path, hub_options(model_args, token)
    try:
        check_model_location(path)
        config = AutoConfig.from_pretrained(path, **options)
        known = label_names_of(config)
        if known == label_names:
            return AutoModelForImageClassification.from_pretrained(path, **options)
        if not model_args.ignore_mismatched_sizes:
            shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
            raise UserError(
                f"{path} classifies {len(known)} labels ({shown}), the data has {len(label_names)}: pass "
                "--ignore_mismatched_sizes to give it a new head for the data's labels."
            )
        return AutoModelForImageClassification.from_pretrained(
            path, **options, ignore_mismatched_sizes=True, num_labels=len(label_names), **label_maps(label_names)
        )
    except (OSError, ValueError) as err:  # no such model, not an image classifier, no network
        raise UserError(f"Could not load a model from {path!r}: {err}") from err
    except SafetensorError as err:
        raise UserError(DAMAGED_WEIGHTS.format(path=path, error=first_line(err))) from None


def is_ours(model: PreTrainedModel) -> bool:
    return isinstance(model, MnistViTForImageClassification)


def build_image_processors(model_args: ModelArguments, model: PreTrainedModel, token: str | None) -> tuple:
    """(the processor that prepares the data, the model's own processor). Ours: the fine-tuned model's
    processor, or a new one for the model's image size, both at once. A stock model: our processor makes
    MNIST-style 28x28 digits, and the stock processor (saved with the model) says how to map them per batch."""
    if model_args.model_name_or_path is None:
        processor = MnistViTImageProcessor(size={"height": model.config.image_size, "width": model.config.image_size})
        return processor, processor
    if is_ours(model):
        processor = MnistViTImageProcessor.from_pretrained(model_args.model_name_or_path)
        return processor, processor
    try:
        own = AutoImageProcessor.from_pretrained(model_args.model_name_or_path, **hub_options(model_args, token))
    except (OSError, ValueError) as err:
        raise UserError(f"{model_args.model_name_or_path} has no image processor to say what input it takes: {err}") from err
    return MnistViTImageProcessor(), own


def compute_metrics_fn(num_labels: int):
    metric = load_metric()

    def compute_metrics(eval_prediction) -> dict:
        predictions = np.argmax(eval_prediction.predictions, axis=-1)
        return metric.compute(predictions=predictions, references=eval_prediction.label_ids, num_labels=num_labels)

    return compute_metrics


# --- the output folder: what may be in it, who writes to it, what to resume ---------------------------

LOCK_FILE = ".train.lock"
LOG_FOLDER = "runs"  # TensorBoard's, with --report_to tensorboard
# What a train.py run writes: the model (ours or a stock one) and its processor, the Trainer's records, the report.
RUN_FILES = {
    "config.json", "model.safetensors", "model.safetensors.index.json", "preprocessor_config.json",
    "configuration_mnist_vit.py", "modeling_mnist_vit.py", "image_processing_mnist_vit.py",
    "training_args.bin", "trainer_state.json", "train_args.json", "best_hyperparameters.json",
    "all_results.json", "train_results.json", "eval_results.json", "test_results.json", "classification_report.txt",
    "confusion_matrix.png", "misclassified.png", "reliability_diagram.png", "training_curves.png",
}


def check_numbers(data_args: DataArguments, augmentation: Augmentation, training_args: TrainingArguments) -> None:
    """Refuse, before any data is loaded, numbers that would train nothing, fail later or mean nothing."""
    checks = [
        (training_args, "num_train_epochs", training_args.num_train_epochs > 0, "above 0"),
        (training_args, "max_steps", training_args.max_steps > 0 or training_args.max_steps == -1,
         "at least 1, or -1 to train for --num_train_epochs"),
        (training_args, "per_device_train_batch_size", training_args.per_device_train_batch_size >= 1, "at least 1"),
        (training_args, "per_device_eval_batch_size", training_args.per_device_eval_batch_size >= 1, "at least 1"),
        (training_args, "learning_rate", training_args.learning_rate > 0, "above 0"),
        (data_args, "max_train_samples", data_args.max_train_samples is None or data_args.max_train_samples >= 1,
         "at least 1"),
        (data_args, "max_eval_samples", data_args.max_eval_samples is None or data_args.max_eval_samples >= 1,
         "at least 1"),
        (data_args, "validation_size", data_args.validation_size > 0, "above 0: a count, or a fraction below 1"),
        (data_args, "typed_digits", data_args.typed_digits >= 0, "0 or more"),
        (augmentation, "rotation", augmentation.rotation >= 0, "0 or more (degrees either way)"),
        (augmentation, "translate", 0 <= augmentation.translate < 1, "at least 0 and below 1 (a fraction of the side)"),
        (augmentation, "zoom", 0 <= augmentation.zoom < 1, "at least 0 and below 1 (scales from 1 - zoom to 1 + zoom)"),
        (augmentation, "shear", 0 <= augmentation.shear < 90, "at least 0 and below 90 (degrees either way)"),
        (training_args, "teacher_epochs", training_args.teacher_epochs >= 0, "0 or more"),
    ]
    for arguments, name, sensible, expected in checks:
        if not sensible:
            raise UserError(f"--{name} must be {expected}, got {getattr(arguments, name)}.")
    if training_args.teacher_model and training_args.teacher_epochs:
        raise UserError("--teacher_model and --teacher_epochs each choose a teacher: give one of them.")


def is_unfinished_run_file(path: Path) -> bool:
    """What an unfinished train.py run leaves: checkpoints, logs, the lock, a distillation's teacher."""
    unfinished = (LOCK_FILE, LOG_FOLDER, distillation.TEACHER_FILE, distillation.PARTIAL_TEACHER_FILE)
    return path.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") or path.name in unfinished


def is_run_file(path: Path) -> bool:
    """Anything a train.py run writes, finished or not (hyperparameter-search trials included)."""
    return is_unfinished_run_file(path) or path.name in RUN_FILES or path.name.startswith("run-")


def written_by_train_py(output_dir: Path) -> bool:
    """Whether a train.py run wrote to the folder: each takes its lock there first, and the lock file stays."""
    return (output_dir / LOCK_FILE).exists()


def check_output_dir(output_dir: Path, overwrite: bool = False) -> None:
    """Refuse an `--output_dir` holding anything but an unfinished run (which is resumed): a finished run
    (unless `overwrite`) or someone's files would be overwritten. `overwrite` replaces only what a train.py
    run wrote there: in a folder that train.py never wrote to, files with a run's names are someone's too."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise UserError(f"--output_dir {output_dir} is a file, not a folder: choose a new or empty folder.")
    finished = (output_dir / "model.safetensors").exists() or (output_dir / TRAINER_STATE_NAME).exists()
    if finished and not overwrite:
        raise UserError(
            f"{output_dir} already holds a trained model. Choose another --output_dir, start afresh there with "
            f"--overwrite_output_dir, or fine-tune it with --model_name_or_path {output_dir} --output_dir NEW_DIR."
        )
    replaceable = overwrite and written_by_train_py(output_dir)
    ours = is_run_file if replaceable else is_unfinished_run_file
    others = sorted(path.name for path in output_dir.iterdir() if not ours(path))
    if not others:
        return
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    if overwrite and not replaceable:
        raise UserError(
            f"--overwrite_output_dir replaces a train.py run, and no train.py run wrote to {output_dir} (it has no "
            f"{LOCK_FILE}): its files ({shown}) stay as they are. Choose a new or empty folder."
        )
    raise UserError(
        f"--output_dir {output_dir} holds other files ({shown}) that this run could overwrite: "
        "choose a new or empty folder."
    )


def remove_run_files(output_dir: Path) -> None:
    """--overwrite_output_dir: delete what an earlier run wrote (checkpoints included, so nothing is resumed);
    the lock stays, it is held now. `check_output_dir` made sure nothing else is there."""
    for path in output_dir.iterdir():
        if path.name == LOCK_FILE:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextmanager
def exclusive_output_dir(output_dir: Path, is_main_process: bool) -> Iterator[None]:
    """Create `output_dir` and hold its lock while the run writes there, so that a second run into the same
    folder is refused. The kernel releases an flock when its process dies: a crash leaves no stale lock. A run
    that fails before writing anything leaves no folder behind that it created.
    Only the main process locks; the other processes of an accelerate/torchrun run are the same run."""
    if not is_main_process:
        yield
        return
    created = not output_dir.exists()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        lock = open(output_dir / LOCK_FILE, "a")
    except OSError as err:
        raise UserError(
            f"Cannot write to --output_dir {output_dir} ({err.strerror}): choose a folder you may write to."
        ) from err
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"Another train.py run is writing to {output_dir}: wait for it to finish, or choose another --output_dir."
            ) from None
        try:
            yield
        except BaseException:
            if created and [path.name for path in output_dir.iterdir()] == [LOCK_FILE]:  # a run that wrote nothing
                shutil.rmtree(output_dir)
            raise


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest `checkpoint-N` whose save finished. A process killed while saving leaves one without
    `trainer_state.json` (the Trainer writes it last): that one is skipped, not deleted."""
    steps = {path: path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-") for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")}
    newest = None
    for path in sorted((path for path, step in steps.items() if step.isdigit()), key=lambda path: int(steps[path])):
        if (path / TRAINER_STATE_NAME).exists():
            newest = path
        else:
            logger.warning(f"Skipping {path}: its save did not finish (the run was stopped while saving).")
    return newest


def checkpoint_to_resume(training_args: TrainingArguments, config) -> Path | None:
    """The checkpoint to resume from: `--resume_from_checkpoint`, else the last complete one in `--output_dir`.

    Refuses checkpoints of another model rather than mix them.
    """
    if training_args.resume_from_checkpoint is not None:
        checkpoint = Path(training_args.resume_from_checkpoint)
        if not (checkpoint / TRAINER_STATE_NAME).exists():
            raise UserError(f"{checkpoint} is not a complete Trainer checkpoint (it has no {TRAINER_STATE_NAME}).")
    else:
        checkpoint = last_complete_checkpoint(Path(training_args.output_dir))
    if checkpoint is not None:
        check_same_model(checkpoint, config)
    return checkpoint


def check_same_model(checkpoint: Path, config) -> None:
    """Resuming a checkpoint of another architecture or label set would fail deep in torch: say so first."""
    saved = json.loads((checkpoint / "config.json").read_text())
    wanted = json.loads(config.to_json_string())
    keys = ("model_type", "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "id2label")
    different = [f"{key}={saved.get(key)} there but {wanted.get(key)} now" for key in keys if saved.get(key) != wanted.get(key)]
    if different:
        raise UserError(
            f"{checkpoint} was trained with other settings ({', '.join(different)}). To resume it, pass the "
            f"same settings; to start a new run, choose another --output_dir."
        )


def optuna_hp_space(trial) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
        "label_smoothing_factor": trial.suggest_float("label_smoothing_factor", 0.0, 0.2),
    }


def search_hyperparameters(trainer: Trainer, trials: int, output_dir: Path) -> dict:
    """Optuna search of `optuna_hp_space`, maximising validation accuracy; the best goes to a JSON file."""
    best = trainer.hyperparameter_search(
        hp_space=optuna_hp_space, n_trials=trials, direction="maximize", backend="optuna",
        compute_objective=lambda metrics: metrics["eval_accuracy"],
    )
    result = {"eval_accuracy": best.objective, "hyperparameters": best.hyperparameters}
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "best_hyperparameters.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_train_args(
    output_dir: Path, model_args: ModelArguments, data_args: DataArguments, augmentation: Augmentation,
    training_args: TrainingArguments,
) -> None:
    """Every argument of the run as JSON (`train_args.json`), for the model card and for people: the
    Trainer's own `training_args.bin` is a pickle and lacks the model and data arguments."""
    arguments = {
        **asdict(model_args), **asdict(data_args), **asdict(augmentation), **training_args.to_dict(),
        "world_size": training_args.world_size,
    }
    (output_dir / "train_args.json").write_text(json.dumps(arguments, indent=2, default=str) + "\n")


def say(training_args: TrainingArguments, message: str) -> None:
    """Tell the user what is happening: once, from the main process."""
    if training_args.process_index == 0:
        print(message, flush=True)


def run(
    model_args: ModelArguments, data_args: DataArguments, augmentation: Augmentation,
    training_args: MnistViTTrainingArguments,
) -> dict:
    """Train, evaluate and test (or the steps --do_* name); write the model and the report to `--output_dir`;
    publish it with --push_to_hub. Returns the metrics for the summary, with `output_dir` and `url`."""
    train, _, _ = training_args.steps()
    if not train and model_args.model_name_or_path is None:
        raise UserError("Evaluating or testing without --do_train needs --model_name_or_path: the trained model.")
    if not train and training_args.hp_search_trials:
        raise UserError("--hp_search_trials searches by training: add --do_train, or leave out --eval_only.")
    check_numbers(data_args, augmentation, training_args)
    output_dir = Path(training_args.output_dir)
    check_output_dir(output_dir, training_args.overwrite_output_dir)
    start_afresh = training_args.overwrite_output_dir and written_by_train_py(output_dir)  # before the lock is made
    hub = HubTarget.check(training_args) if training_args.push_to_hub else None
    training_args.push_to_hub = False  # the Trainer would push every checkpoint: the run is published once, at the end
    with exclusive_output_dir(output_dir, training_args.process_index == 0):
        if start_afresh and training_args.process_index == 0:
            remove_run_files(output_dir)
        results, trainer = train_and_report(model_args, data_args, augmentation, training_args)
        if hub is not None and trainer.is_world_process_zero():
            results["url"] = hub.publish(trainer, data_args)
    return {**results, "output_dir": str(output_dir)}


def train_and_report(
    model_args: ModelArguments, data_args: DataArguments, augmentation: Augmentation,
    training_args: MnistViTTrainingArguments,
) -> tuple[dict, Trainer]:
    train, evaluate, predict = training_args.steps()
    token = training_args.hub_token
    say(training_args, f"Reading {data_source(data_args)} (MNIST's IDX files are converted once, in about a minute; "
        "later runs read the cache)")
    splits = load_splits(data_args, model_args.cache_dir, token, train)
    label_names = splits["validation"].features["label"].names
    model = build_model(model_args, label_names, token)
    data_processor, model_processor = build_image_processors(model_args, model, token)
    dataset = {name: InMemorySplit(split) for name, split in to_pixel_arrays(splits, data_processor).items()}
    report_split = "test" if "test" in dataset else "validation"
    output_dir = Path(training_args.output_dir)
    resume = checkpoint_to_resume(training_args, model.config) if train else None

    teacher, teacher_metrics = None, {}
    if train and training_args.teacher_model:
        teacher = distillation.ModelTeacher.from_pretrained(
            training_args.teacher_model, len(label_names), training_args.device, token
        )
    if train and training_args.teacher_epochs:
        saved = output_dir / distillation.TEACHER_FILE
        say(training_args, f"Resuming with the teacher saved in {saved}" if saved.exists()
            else f"Training a CNN teacher for {training_args.teacher_epochs} epochs")
        # the main process trains and saves it; the others then read it (or, on another machine, train their own)
        with training_args.main_process_first(local=False, desc="the teacher"):
            teacher = distillation.load_or_train_teacher(
                output_dir, dataset["train"], len(label_names), augmentation, training_args.teacher_epochs,
                training_args.seed, training_args.device, save=training_args.process_index == 0,
            )
        teacher_metrics["teacher_eval_accuracy"] = distillation.accuracy(teacher, dataset["validation"], training_args.device)
        say(training_args, f"Teacher's validation accuracy: {teacher_metrics['teacher_eval_accuracy']:.2%}")
    callbacks = []
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    stock_input = None if is_ours(model) else StockModelInput.from_image_processor(model_processor, model.config.num_channels)
    trainer = AugmentingTrainer(
        model=None if training_args.hp_search_trials else model,
        model_init=(lambda trial: build_model(model_args, label_names, token)) if training_args.hp_search_trials else None,
        args=training_args,
        data_collator=collate_batch,
        train_dataset=dataset.get("train"),
        eval_dataset=dataset["validation"],
        processing_class=model_processor,
        compute_metrics=compute_metrics_fn(len(label_names)),
        callbacks=callbacks,
        augmentation=augmentation,
        model_input=stock_input,
        teacher=teacher,
    )
    if training_args.hp_search_trials:
        return search_hyperparameters(trainer, training_args.hp_search_trials, output_dir), trainer

    results, temperature = {}, None
    if train:
        say(training_args, f"Training {type(model).__name__} ({model.num_parameters():,} parameters) on "
            f"{len(dataset['train']):,} examples, validating on {len(dataset['validation']):,}")
        if resume is not None:
            print(f"Resuming from {resume}")
        train_result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if trainer.is_world_process_zero():
            (output_dir / distillation.TEACHER_FILE).unlink(missing_ok=True)  # needed only to resume
        temperature, calibration = calibrate(trainer, dataset["validation"])
        trainer.save_model()  # the best model, calibrated, with its image processor (and our code)
        trainer.save_metrics("train", {**train_result.metrics, **teacher_metrics, **calibration})
        trainer.save_state()
        results.update(train_result.metrics, **teacher_metrics)
        if trainer.is_world_process_zero():
            write_train_args(output_dir, model_args, data_args, augmentation, training_args)
            write_training_curves(output_dir, trainer.state.log_history)
    if evaluate:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    if predict:
        prediction = trainer.predict(dataset[report_split], metric_key_prefix="test")
        results.update(prediction.metrics)
        if trainer.is_world_process_zero():
            split = dataset[report_split]
            reported_on = "test" if report_split == "test" else "validation (the data has no test split)"
            results.update(write_report(
                output_dir, split.pixel_values.numpy(), split.labels.numpy(), prediction.predictions, label_names,
                prediction.metrics, split=reported_on, temperature=temperature,
            ))
    return results, trainer


def calibrate(trainer: Trainer, validation: InMemorySplit) -> tuple[float, dict]:
    """Fit a temperature on the validation split and fold it into the model's classifier (calibration.py)."""
    prediction = trainer.predict(validation, metric_key_prefix="calibration")
    logits, labels = torch.from_numpy(prediction.predictions), torch.from_numpy(prediction.label_ids)
    temperature = fit_temperature(logits, labels)
    fold_temperature(trainer.model, temperature)
    logits, labels = prediction.predictions.astype(np.float64), labels.numpy()
    return temperature, {
        "temperature": temperature,
        "eval_ece_uncalibrated": expected_calibration_error(softmax(logits, axis=1), labels),
        "eval_ece": expected_calibration_error(softmax(logits / temperature, axis=1), labels),
    }


@dataclass
class HubTarget:
    """Where --push_to_hub publishes, checked before training: our model through our publisher (the same repo
    as push_to_hub.py builds), a stock model the Trainer's way (its card, the output folder with our report)."""

    repo_id: str
    token: str

    @classmethod
    def check(cls, training_args: TrainingArguments) -> "HubTarget":
        token = training_args.hub_token or get_token()
        if token is None:
            raise UserError("You are not logged in to the Hugging Face Hub: run `hf auth login`, or pass --token.")
        api = HfApi(token=token)
        repo_id = training_args.hub_model_id or Path(training_args.output_dir).resolve().name
        if "/" not in repo_id:
            with hub_upload.hub_errors(api, repo_id):
                repo_id = f"{api.whoami()['name']}/{repo_id}"
        hub_upload.check_repo_id(repo_id)
        hub_upload.check_write_access(api, repo_id)
        return cls(repo_id, token)

    def publish(self, trainer: Trainer, data_args: DataArguments) -> str:
        args = trainer.args
        if is_ours(trainer.model):
            return hub_upload.publish(
                args.output_dir, self.repo_id, data_dir=data_args.data_dir, token=self.token,
                private=bool(args.hub_private_repo), revision=args.hub_revision,
            )
        args.hub_model_id = self.repo_id
        with hub_upload.hub_errors(HfApi(token=self.token), self.repo_id):
            commit = trainer.push_to_hub(token=self.token)
        return commit.commit_url
