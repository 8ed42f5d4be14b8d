"""Training with the Hugging Face `Trainer`: arguments, model, metrics, resume rules and the final report.

`train.py` parses the three argument dataclasses here (or a JSON/YAML recipe) and calls `run`.
The Trainer brings everything else: one CPU, one GPU, or many processes under `accelerate launch`
or `torchrun`; bf16, `torch.compile`, logging to TensorBoard; checkpoints and resume.
"""

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from .configuration_mnist_vit import MnistViTConfig
from .data import (
    MNIST_HUB_NAME,
    Augmentation,
    InMemorySplit,
    collate_batch,
    limit_samples,
    load_image_dataset,
    split_train_validation,
    to_pixel_arrays,
)
from .image_processing_mnist_vit import MnistViTImageProcessor
from .modeling_mnist_vit import MnistViTForImageClassification
from .report import load_metric, write_report

logger = logging.get_logger(__name__)


class UserError(Exception):
    """A mistake in the command line or the files it names: printed as one sentence, no traceback."""


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Fine-tune (or evaluate) a trained model: a folder or a Hub repo id."}
    )
    patch_size: int | None = field(default=None, metadata={"help": "Size overrides for a new model."})
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None
    hidden_dropout_prob: float | None = None
    attention_probs_dropout_prob: float | None = None

    def config_overrides(self) -> dict:
        names = ("patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        names += ("hidden_dropout_prob", "attention_probs_dropout_prob")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    dataset_name: str = field(default=MNIST_HUB_NAME, metadata={"help": "A Hub image-classification dataset."})
    data_dir: str | None = field(
        default=None, metadata={"help": "A folder with MNIST's four IDX files (gzipped or not), or an image folder."}
    )
    validation_size: int = field(default=5000, metadata={"help": "Examples held out of train for validation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N examples only."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Validate and test on N examples only."})
    rotation: float = field(default=10.0, metadata={"help": "Augmentation: max rotation in degrees (0: none)."})
    translate: float = field(default=0.1, metadata={"help": "Augmentation: max shift, a fraction of the side."})
    zoom: float = field(default=0.1, metadata={"help": "Augmentation: scale drawn from [1 - zoom, 1 + zoom]."})
    shear: float = field(default=10.0, metadata={"help": "Augmentation: max horizontal shear in degrees."})
    hflip: bool = field(default=False, metadata={"help": "Augmentation: mirror half the digits (hurts MNIST)."})
    upload_augmentation: bool = field(
        default=False,
        metadata={"help": "Augmentation: make most digits look like uploads after the stock ViT processor (either "
                  "ink polarity, any size and place, paper, light, lines, blur, noise): the Hub root model's training."},
    )
    eval_only: bool = field(
        default=False, metadata={"help": "Only evaluate --model_name_or_path on the test split and write the report."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without a better validation accuracy."}
    )
    hp_search_trials: int = field(
        default=0, metadata={"help": "Search learning rate, weight decay and label smoothing with N Optuna trials."}
    )

    def augmentation(self) -> Augmentation:
        return Augmentation(
            rotation=self.rotation, translate=self.translate, scale=(1 - self.zoom, 1 + self.zoom),
            shear=self.shear, hflip=self.hflip, uploads=self.upload_augmentation,
        )


@dataclass
class MnistViTTrainingArguments(TrainingArguments):
    """`TrainingArguments` with this project's defaults: the original model's 10-epoch run, done well."""

    output_dir: str = field(default="runs/mnist-vit", metadata={"help": "Where checkpoints and results go."})
    num_train_epochs: float = 10.0
    per_device_train_batch_size: int = 128
    per_device_eval_batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: float = 0.05
    lr_scheduler_type: str = "cosine"
    label_smoothing_factor: float = 0.1
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int | None = 2
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "accuracy"
    logging_steps: float = 50
    remove_unused_columns: bool = False  # True wraps the collator, which takes InMemorySplit's whole batches


class AugmentingTrainer(Trainer):
    """A Trainer that augments each training batch after it reached the model's device."""

    def __init__(self, *args, augmentation: Augmentation, **kwargs):
        super().__init__(*args, **kwargs)
        self.augmentation = augmentation

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            inputs = {**inputs, "pixel_values": self.augmentation(inputs["pixel_values"])}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


def open_dataset(dataset_name: str, data_dir: str | None) -> datasets.DatasetDict:
    """`load_image_dataset`, its errors (no network, a bad data folder) as one sentence for the command line."""
    try:
        return load_image_dataset(dataset_name, data_dir)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UserError(str(err)) from err


def load_splits(data_args: DataArguments) -> datasets.DatasetDict:
    """The train, validation and test splits, limited as the flags ask."""
    dataset = open_dataset(data_args.dataset_name, data_args.data_dir)
    dataset = split_train_validation(dataset, data_args.validation_size, seed=42)
    return limit_samples(dataset, data_args.max_train_samples, data_args.max_eval_samples)


def label_maps(label_names: list[str]) -> dict:
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}


def build_model(model_args: ModelArguments, label_names: list[str]) -> MnistViTForImageClassification:
    """A new model of the requested size, or the trained one with a new head if its labels differ."""
    if model_args.model_name_or_path is None:
        try:
            config = MnistViTConfig(**model_args.config_overrides(), **label_maps(label_names))
        except ValueError as err:
            raise UserError(str(err)) from err
        return MnistViTForImageClassification(config)
    try:
        model = MnistViTForImageClassification.from_pretrained(model_args.model_name_or_path)
    except (OSError, ValueError) as err:
        raise UserError(f"Could not load a model from {model_args.model_name_or_path!r}: {err}") from err
    if list(model.config.id2label.values()) != label_names:
        model = MnistViTForImageClassification.from_pretrained(
            model_args.model_name_or_path, ignore_mismatched_sizes=True,
            num_labels=len(label_names), **label_maps(label_names),
        )
    return model


def build_image_processor(model_args: ModelArguments, config: MnistViTConfig) -> MnistViTImageProcessor:
    """The fine-tuned model's own image processor, or a new one for the model's image size."""
    if model_args.model_name_or_path is not None:
        return MnistViTImageProcessor.from_pretrained(model_args.model_name_or_path)
    return MnistViTImageProcessor(size={"height": config.image_size, "width": config.image_size})


def compute_metrics_fn(num_labels: int):
    metric = load_metric()

    def compute_metrics(eval_prediction) -> dict:
        predictions = np.argmax(eval_prediction.predictions, axis=-1)
        return metric.compute(predictions=predictions, references=eval_prediction.label_ids, num_labels=num_labels)

    return compute_metrics


# --- the output folder: what may be in it, who writes to it, what to resume ---------------------------

LOCK_FILE = ".train.lock"
LOG_FOLDER = "runs"  # TensorBoard's, with --report_to tensorboard


def check_numbers(data_args: DataArguments, training_args: TrainingArguments) -> None:
    """Refuse, before any data is loaded, numbers that would train nothing or fail later."""
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
    ]
    for arguments, name, sensible, expected in checks:
        if not sensible:
            raise UserError(f"--{name} must be {expected}, got {getattr(arguments, name)}.")


def is_unfinished_run_file(path: Path) -> bool:
    """What an unfinished train.py run leaves: checkpoints, logs, the lock."""
    return path.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") or path.name in (LOCK_FILE, LOG_FOLDER)


def check_output_dir(output_dir: Path) -> None:
    """Refuse an `--output_dir` holding anything but an unfinished run (which is resumed): a finished run
    or someone's files would be overwritten."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise UserError(f"--output_dir {output_dir} is a file, not a folder: choose a new or empty folder.")
    if (output_dir / "model.safetensors").exists() or (output_dir / TRAINER_STATE_NAME).exists():
        raise UserError(
            f"{output_dir} already holds a trained model. Choose another --output_dir, or fine-tune it "
            f"with --model_name_or_path {output_dir} --output_dir NEW_DIR."
        )
    others = sorted(path.name for path in output_dir.iterdir() if not is_unfinished_run_file(path))
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise UserError(
            f"--output_dir {output_dir} holds other files ({shown}) that this run could overwrite: "
            "choose a new or empty folder."
        )


@contextmanager
def exclusive_output_dir(output_dir: Path, is_main_process: bool) -> Iterator[None]:
    """Create `output_dir` and hold its lock while the run writes there, so that a second run into the same
    folder is refused. The kernel releases an flock when its process dies: a crash leaves no stale lock.
    Only the main process locks; the other processes of an accelerate/torchrun run are the same run."""
    if not is_main_process:
        yield
        return
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
        yield


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


def checkpoint_to_resume(training_args: TrainingArguments, config: MnistViTConfig) -> Path | None:
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


def check_same_model(checkpoint: Path, config: MnistViTConfig) -> None:
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
    output_dir: Path, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> None:
    """Every argument of the run as JSON (`train_args.json`), for the model card and for people: the
    Trainer's own `training_args.bin` is a pickle and lacks the model and data arguments."""
    arguments = {**asdict(model_args), **asdict(data_args), **training_args.to_dict(), "world_size": training_args.world_size}
    (output_dir / "train_args.json").write_text(json.dumps(arguments, indent=2, default=str) + "\n")


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    """Train (or only evaluate), then write the model and the full report on the test split to `--output_dir`."""
    if data_args.eval_only and model_args.model_name_or_path is None:
        raise UserError("--eval_only needs --model_name_or_path: the trained model to evaluate.")
    check_numbers(data_args, training_args)
    output_dir = Path(training_args.output_dir)
    check_output_dir(output_dir)
    with exclusive_output_dir(output_dir, training_args.process_index == 0):
        return train_and_report(model_args, data_args, training_args)


def train_and_report(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    splits = load_splits(data_args)
    label_names = splits["train"].features["label"].names
    model = build_model(model_args, label_names)
    image_processor = build_image_processor(model_args, model.config)
    dataset = {name: InMemorySplit(split) for name, split in to_pixel_arrays(splits, image_processor).items()}
    output_dir = Path(training_args.output_dir)
    resume = None if data_args.eval_only else checkpoint_to_resume(training_args, model.config)

    callbacks = []
    if data_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    trainer = AugmentingTrainer(
        model=None if data_args.hp_search_trials else model,
        model_init=(lambda trial: build_model(model_args, label_names)) if data_args.hp_search_trials else None,
        args=training_args,
        data_collator=collate_batch,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        processing_class=image_processor,
        compute_metrics=compute_metrics_fn(len(label_names)),
        callbacks=callbacks,
        augmentation=data_args.augmentation(),
    )
    if data_args.hp_search_trials:
        return search_hyperparameters(trainer, data_args.hp_search_trials, output_dir)

    if not data_args.eval_only:
        if resume is not None:
            print(f"Resuming from {resume}")
        train_result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        trainer.save_model()  # the best model, its image processor and its code
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_metrics("eval", trainer.evaluate())
        trainer.save_state()
        if trainer.is_world_process_zero():
            write_train_args(output_dir, model_args, data_args, training_args)

    prediction = trainer.predict(dataset["test"], metric_key_prefix="test")
    results = dict(prediction.metrics)
    if trainer.is_world_process_zero():
        test = dataset["test"]
        results = write_report(
            output_dir, test.pixel_values.numpy(), test.labels.numpy(), prediction.predictions, label_names,
            extra_metrics=prediction.metrics,
        )
    return results
