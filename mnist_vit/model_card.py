"""The model card: the Hub metadata and `model_card_template.md` rendered with what the run's folder records.

    card = build_model_card(run, root, onnx, "alice/mnist-vit", None, examples)

The prose and the layout live in the template (Jinja, rendered by `huggingface_hub.ModelCard.from_template`);
this module computes the metadata, the tables and the figures it fills in. Whatever the folder does not record
(run_folder.py), the card says it cannot know.
"""

import importlib.metadata
from pathlib import Path
from urllib.parse import quote

from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants

from .check_hub_folder import EXAMPLES_FOLDER, REMOTE_CODE_FOLDER
from .configuration_mnist_vit import MnistViTConfig
from .data import MNIST_HUB_NAME
from .distillation import TEACHER_WEIGHT
from .onnx_export import OnnxAgreement
from .run_folder import STOCK_PIPELINE_RESULTS, TrainedRun
from .widget_examples import WidgetExample

TEMPLATE = Path(__file__).with_name("model_card_template.md")
# The libraries a reader needs to reproduce the card's numbers, as the Trainer's own cards list them.
FRAMEWORKS = ("transformers", "torch", "datasets", "huggingface_hub")


def package_license() -> str:
    """The mnist-vit package's licence as its metadata declares it (setup.cfg: an SPDX id, such as Apache-2.0)."""
    return importlib.metadata.metadata("mnist-vit")["License"]


def repo_file_url(repo_id: str, revision: str | None, path: str) -> str:
    return f"{constants.ENDPOINT}/{repo_id}/resolve/{quote(revision or 'main', safe='')}/{path}"


def eval_results(test_results: dict | None) -> list[EvalResult] | None:
    if test_results is None:
        return None
    evaluation = {
        "task_type": "image-classification", "task_name": "Image Classification",
        "dataset_type": MNIST_HUB_NAME, "dataset_name": "MNIST", "dataset_split": "test",
    }
    return [
        EvalResult(**evaluation, metric_type="accuracy", metric_name="Test accuracy",
                   metric_value=round(test_results["test_accuracy"], 4)),
        EvalResult(**evaluation, metric_type="f1", metric_name="Test macro F1", metric_args={"average": "macro"},
                   metric_value=round(test_results["test_f1_macro"], 4)),
    ]


def card_data(run: TrainedRun, repo_id: str, revision: str | None, examples: list[WidgetExample]) -> ModelCardData:
    return ModelCardData(
        model_name=repo_id.split("/")[1],
        license=package_license().lower(),  # the Hub's licence ids are SPDX ids in lower case
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["vision", "vit", "mnist", "handwritten-digits"],
        datasets=[MNIST_HUB_NAME],
        metrics=["accuracy", "f1"],
        eval_results=eval_results(run.test_results),
        widget=[
            {
                "src": repo_file_url(repo_id, revision, f"{EXAMPLES_FOLDER}/{example.file}"),
                "example_title": example.title,
                "output": example.outputs,
            }
            for example in examples
        ],
    )


# --- tables --------------------------------------------------------------------------------------------


def markdown_table(header: tuple, *rows: tuple) -> str:
    lines = [header, ("---",) * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def architecture_table(config: MnistViTConfig, num_parameters: int) -> str:
    grid = config.image_size // config.patch_size
    return markdown_table(
        ("", ""),
        ("input", f"{config.image_size}x{config.image_size} grayscale ({config.num_channels} channel); "
                  "the root model takes RGB and converts it to gray in its first layer"),
        ("patches", f"{config.patch_size}x{config.patch_size}: {grid * grid} patches + a CLS token, "
                    "learned position embeddings"),
        ("encoder", f"{config.num_hidden_layers} pre-norm layers, hidden size {config.hidden_size}, "
                    f"{config.num_attention_heads} heads, MLP {config.intermediate_size} ({config.hidden_act})"),
        ("head", f"LayerNorm, then a linear classifier on the CLS token: {config.num_labels} classes"),
        ("parameters", f"{num_parameters:,}"),
    )


def augmentation_text(args: dict) -> str:
    steps = [
        f"rotation up to {args['rotation']:g} degrees" if args["rotation"] else "",
        f"shift up to {args['translate']:.0%} of the side" if args["translate"] else "",
        f"zoom {1 - args['zoom']:g} to {1 + args['zoom']:g}" if args["zoom"] else "",
        f"shear up to {args['shear']:g} degrees" if args["shear"] else "",
        "horizontal flips" if args["hflip"] else "",
    ]
    return ", ".join(step for step in steps if step) or "none"


def hyperparameter_table(args: dict, state: dict | None) -> str:
    per_device = state["train_batch_size"] if state else args["per_device_train_batch_size"]
    batch_size = per_device * args["world_size"] * args["gradient_accumulation_steps"]
    steps = f"{state['global_step']} optimizer steps" if state else "optimizer steps not recorded: no `trainer_state.json`"
    warmup = args["warmup_steps"]
    warmup = f"{warmup:.0%} of the steps" if warmup < 1 else f"{int(warmup)} steps"
    precision = "bf16" if args["bf16"] else "fp16" if args["fp16"] else "fp32"
    return markdown_table(
        ("hyperparameter", "value"),
        ("epochs", f"{args['num_train_epochs']:g} ({steps})"),
        ("batch size", batch_size),
        ("optimizer", f"{args['optim']} (betas {args['adam_beta1']}, {args['adam_beta2']}), weight decay {args['weight_decay']}"),
        ("learning rate", f"{args['learning_rate']}, {args['lr_scheduler_type']} schedule, warmup {warmup}"),
        ("label smoothing", args["label_smoothing_factor"]),
        ("gradient clipping", args["max_grad_norm"]),
        ("augmentation (random affine, per batch)", augmentation_text(args)),
        ("distillation", f"from a small CNN trained first for {args['teacher_epochs']} epochs (soft targets, "
                         f"{TEACHER_WEIGHT:.0%} of the loss)" if args.get("teacher_epochs") else "none"),
        ("typed digits added to the training split", args.get("typed_digits") or "none"),
        ("validation split", f"{args['validation_size']} digits held out of train"),
        ("precision", precision),
        ("seed", args["seed"]),
    )


def epoch_table(log_history: list[dict]) -> str | None:
    """Each validation of the run with the training loss logged last before it, as the Trainer's cards list
    them; None when the run never validated while training."""
    rows, training_loss = [], "not logged"
    for entry in log_history:
        if "loss" in entry:
            training_loss = f"{entry['loss']:.4f}"
        if "eval_loss" in entry:
            rows.append((f"{entry['epoch']:g}", training_loss, f"{entry['eval_loss']:.4f}", f"{entry['eval_accuracy']:.2%}"))
    if not rows:
        return None
    return markdown_table(("epoch", "training loss", "validation loss", "validation accuracy"), *rows)


def training_time(train_results: dict) -> str:
    minutes, seconds = divmod(round(train_results["train_runtime"]), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {seconds} s" if hours else f"{minutes} min {seconds} s"


def overall_table(test_results: dict) -> str:
    return markdown_table(
        ("accuracy", "macro F1", "macro precision", "macro recall", "loss"),
        (f"**{test_results['test_accuracy']:.2%}**", *(f"{test_results[key]:.4f}" for key in (
            "test_f1_macro", "test_precision_macro", "test_recall_macro", "test_loss"))),
    )


def per_digit_table(per_class: dict) -> str:
    return markdown_table(
        ("digit", "precision", "recall", "F1", "support"),
        *((label, *(f"{scores[key]:.4f}" for key in ("precision", "recall", "f1")), scores["support"])
          for label, scores in per_class.items()),
    )


def stock_pipeline_table(measured: dict) -> str:
    rows = ((name, f"{result['pictures']:,}", f"{result['accuracy']:.2%}") for name, result in measured.items())
    return markdown_table(("pictures", "count", "accuracy"), *rows)


# --- what the template is given ------------------------------------------------------------------------


def calibration(run: TrainedRun) -> dict | None:
    """The temperature folded into the model's classifier and the test calibration error before and after it;
    None when the run recorded no temperature (its scores are uncalibrated)."""
    temperature = (run.train_results or {}).get("temperature")
    if temperature is None:
        return None
    test = run.test_results or {}
    errors = f"{test['test_ece_uncalibrated']:.2%} before, {test['test_ece']:.2%} after" if "test_ece" in test else None
    return {"temperature": f"{temperature:.3f}", "test_ece": errors}


def training(run: TrainedRun) -> dict | None:
    args, state = run.train_args, run.trainer_state
    if args is None:
        return None
    return {
        "fine_tuned_from": args["model_name_or_path"],
        "best_metric": args["metric_for_best_model"] if args["load_best_model_at_end"] else None,
        "hyperparameters": hyperparameter_table(args, state),
        "time": training_time(run.train_results) if run.train_results else None,
        "state_recorded": state is not None,
        "epochs": epoch_table(state["log_history"]) if state else None,
    }


def results(run: TrainedRun) -> dict | None:
    test, validation = run.test_results, run.eval_results
    if test is None:
        return None
    return {
        "accuracy": f"{test['test_accuracy']:.2%}",
        "digits": f"{sum(scores['support'] for scores in test['test_per_class'].values()):,}",
        "overall": overall_table(test),
        "per_digit": per_digit_table(test["test_per_class"]),
        "validation_accuracy": f"{validation['eval_accuracy']:.2%}" if validation else None,
    }


def root_model(root: TrainedRun | None) -> dict | None:
    if root is None:
        return None
    measured = root.stock_pipeline_results
    return {
        "name": root.path.name,
        "test_accuracy": f"{root.test_results['test_accuracy']:.2%}" if root.test_results else None,
        "stock_pipeline": stock_pipeline_table(measured) if measured else None,
        "calibration": calibration(root),
    }


def onnx_checks(onnx: OnnxAgreement) -> dict:
    return {
        "fp32_difference": f"{onnx.fp32_max_difference:.1g}",
        "quantized_agreement": f"{onnx.quantized_agreement:.2%}",
        "digits": f"{onnx.digits:,}",
    }


def build_model_card(
    run: TrainedRun, root: TrainedRun | None, onnx: OnnxAgreement, repo_id: str, revision: str | None,
    examples: list[WidgetExample],
) -> ModelCard:
    """The card of `run`, published with `root` at the repo's root (None: `run` itself is there)."""
    parameters = run.model.num_parameters()
    where = f'"{repo_id}"' + (f', revision="{revision}"' if revision else "")
    return ModelCard.from_template(
        card_data(run, repo_id, revision, examples),
        template_path=str(TEMPLATE),
        name=repo_id.split("/")[1],
        mnist=MNIST_HUB_NAME,
        parameters=f"{parameters:,}",
        architecture=architecture_table(run.model.config, parameters),
        training=training(run),
        results=results(run),
        figures=run.figures,
        calibration=calibration(run),
        root=root_model(root),
        onnx=onnx_checks(onnx),
        where=where,
        remote=f'{where}, subfolder="{REMOTE_CODE_FOLDER}"',
        remote_code_folder=REMOTE_CODE_FOLDER,
        stock_pipeline_results=STOCK_PIPELINE_RESULTS,
        package_license=package_license(),
        frameworks={name: importlib.metadata.version(name) for name in FRAMEWORKS},
    )
