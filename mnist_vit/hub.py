"""Publishing a trained run on the Hugging Face Hub: one repo that every tool can serve, in one commit.

    publish("runs/mnist-vit", "alice/mnist-vit", data_dir="../shared/mnist")

The repo:

    README.md                     the model card, built from the run's own files
    config.json                   a plain `ViTForImageClassification` (`model_type: vit`) taking RGB, with a
    model.safetensors             stock `ViTImageProcessor` (see export.py): the widget, Inference Providers and
    preprocessor_config.json      Endpoints, transformers.js and ONNX exporters serve it, no remote code;
                                  the run's model, or with `root_model` a second one trained to read uploads
                                  through that processor (recipes/root.yaml)
    onnx/model.onnx               the root as ONNX for transformers.js: fp32 and 8-bit (onnx_export.py),
    onnx/model_quantized.onnx     checked against torch on the test digits
    examples/0.png ... 9.png      one test digit per class: the card's widget examples; with `root_model`,
    examples/drawing.png          also a drawing and a photo of test digits that both variants read right
    examples/photo.jpg
    confusion_matrix.png  misclassified.png
    remote_code/                  our model, its image processor and their code (`trust_remote_code=True`):
                                  MNIST-style preprocessing of any picture of a digit

The remote-code variant is a subfolder, not a branch, so that one commit publishes both and a pull
request carries both. transformers 5.24 reads `subfolder` for the config and the weights but fetches
`auto_map`'s code from the repo root, so `remote_code/`'s `auto_map` names its files with the folder
(`"remote_code/modeling_mnist_vit.MnistViTForImageClassification"`): the dynamic-module loader fetches
that path and the files it imports beside it. The variant therefore loads from the repo (a Hub id or a
local copy of the whole repo) with `subfolder="remote_code"`, not from the subfolder alone.

Before anything is sent, the staged folder is loaded in a fresh process that cannot import this package
(`check_hub_folder.py`). The upload is one `create_commit`: with `hf_xet` installed `upload_folder`
streams a folder through a pipeline that may commit in several batches.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import datasets
import httpx2
import numpy as np
import torch
from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.errors import HFValidationError, HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id
from PIL import Image, ImageOps
from transformers import ViTForImageClassification, ViTImageProcessorPil

from . import check_hub_folder, photos
from .check_hub_folder import EXAMPLES_FOLDER, REMOTE_CODE_FOLDER
from .configuration_mnist_vit import MnistViTConfig
from .data import MNIST_HUB_NAME
from .export import export_to_vit
from .image_processing_mnist_vit import MnistViTImageProcessor
from .modeling_mnist_vit import MnistViTForImageClassification
from .onnx_export import OnnxAgreement, stage_onnx
from .errors import UserError
from .training import open_dataset

MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
# What train.py writes beside the model. Each may be missing (the shipped checkpoint has no trainer_state.json):
# the card reports what is there and says what it cannot know.
RUN_RECORDS = ("train_args.json", "trainer_state.json", "eval_results.json", "test_results.json")
FIGURES = ("confusion_matrix.png", "misclassified.png")
# Test digits searched for widget examples: enough to find a confidently classified one of each class.
WIDGET_CANDIDATES = 1000
# Test digits made into a drawing and a photo, for the widget examples of uploads.
UPLOAD_CANDIDATES = 12
PHOTO_SIDE = (800, 1200)  # pixels on the long side: a phone photo, kept small for the repo
# What bench/bench_root.py --save measures of a root model through the stock pipeline, beside its weights.
STOCK_PIPELINE_RESULTS = "stock_pipeline_results.json"
WIDGET_TOP_K = 3
LICENSE = "apache-2.0"  # the package's license (setup.cfg)
MNIST_CITATION = """@article{lecun1998gradient,
  title   = {Gradient-based learning applied to document recognition},
  author  = {LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and Haffner, Patrick},
  journal = {Proceedings of the IEEE},
  volume  = {86},
  number  = {11},
  pages   = {2278--2324},
  year    = {1998}
}"""


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class TrainedRun:
    """A folder with a trained model, loaded: the model, its processor and what the card reports (None: the
    folder does not record it)."""

    path: Path
    model: MnistViTForImageClassification
    image_processor: MnistViTImageProcessor
    train_args: dict | None
    trainer_state: dict | None
    eval_results: dict | None
    test_results: dict | None
    stock_pipeline_results: dict | None  # a root model's, from bench/bench_root.py --save
    figures: list[str]


def check_run_dir(model_dir: str | os.PathLike, flag: str = "--model_dir") -> Path:
    """Refuse, naming why (and the `flag` that named it), a folder without a trained mnist-vit model and its
    image processor."""
    path = Path(model_dir)
    if not path.is_dir():
        raise UserError(f"{flag} {path} does not exist; pass a folder with a trained model, such as a train.py --output_dir.")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise UserError(
            f"{path} is not a trained mnist-vit model: it lacks {', '.join(missing)}. "
            "Pass a folder with a trained model and its image processor, such as a train.py --output_dir."
        )
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
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

    return TrainedRun(
        path=path,
        model=MnistViTForImageClassification.from_pretrained(path).eval(),
        image_processor=MnistViTImageProcessor.from_pretrained(path),
        train_args=read_json("train_args.json"),
        trainer_state=read_json("trainer_state.json"),
        eval_results=read_json("eval_results.json"),
        test_results=read_json("test_results.json"),
        stock_pipeline_results=read_json(STOCK_PIPELINE_RESULTS),
        figures=[figure for figure in FIGURES if (path / figure).is_file()],
    )


def not_recorded(name: str) -> str:
    return f"Not recorded: the published folder had no `{name}`, so this card cannot say."


def load_test_split(data_dir: str | os.PathLike | None) -> datasets.Dataset:
    return open_dataset(MNIST_HUB_NAME, data_dir)["test"]


# --- widget examples ----------------------------------------------------------------------------------


@dataclass
class WidgetExample:
    file: str  # its name in examples/
    title: str
    content: bytes  # the picture file
    outputs: list[dict]  # the plain ViT's top classes, {"label", "score"}: what the widget shows


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def top_outputs(probabilities: np.ndarray, id2label: dict) -> list[dict]:
    top = np.argsort(-probabilities)[:WIDGET_TOP_K]
    return [{"label": id2label[int(i)], "score": round(float(probabilities[i]), 4)} for i in top]


@dataclass
class Readings:
    """What both variants make of some pictures: the root's class probabilities and its lead over the runner-up,
    whether the remote-code model (through its own processor) gives the root's label, and whether that is right."""

    probabilities: np.ndarray
    lead: np.ndarray
    agree: np.ndarray
    right: np.ndarray


def read_by_both(
    vit: ViTForImageClassification, vit_processor: ViTImageProcessorPil, run: TrainedRun, pictures: list,
    labels: np.ndarray,
) -> Readings:
    with torch.no_grad():
        root = vit(**vit_processor(pictures, return_tensors="pt")).logits.softmax(-1).numpy()
        remote = run.model(**run.image_processor(pictures, return_tensors="pt")).logits.argmax(-1).numpy()
    ranked = np.sort(root, axis=1)
    agree = root.argmax(1) == remote
    return Readings(root, ranked[:, -1] - ranked[:, -2], agree, agree & (remote == labels))


def pick_widget_examples(
    vit: ViTForImageClassification, vit_processor: ViTImageProcessorPil, run: TrainedRun,
    test_split: datasets.Dataset,
) -> list[WidgetExample]:
    """One test digit per class: one that both variants read right if any (else one they read alike), with the
    root's widest lead over the runner-up (a wide lead keeps the label under both preprocessings: the remote-code
    processor moves a few MNIST digits by a pixel when it centres their mass)."""
    candidates = test_split.select(range(min(WIDGET_CANDIDATES, len(test_split))))
    images, labels = list(candidates["image"]), np.asarray(list(candidates["label"]))
    read = read_by_both(vit, vit_processor, run, images, labels)
    examples = []
    for class_id, label in vit.config.id2label.items():
        members = np.flatnonzero(labels == class_id)
        if members.size == 0:
            raise UserError(f"The first {len(candidates)} test digits hold no {label!r}, so no widget example for it.")
        best = max(members, key=lambda index: (read.right[index], read.agree[index], read.lead[index]))
        outputs = top_outputs(read.probabilities[best], vit.config.id2label)
        examples.append(WidgetExample(f"{label}.png", f"Digit {label}", png_bytes(images[best]), outputs))
    return examples


def pick_upload_examples(
    vit: ViTForImageClassification, vit_processor: ViTImageProcessorPil, run: TrainedRun, test_split: datasets.Dataset
) -> list[WidgetExample]:
    """A black-on-white drawing and a phone photo of test digits, each the one that both the root and the
    remote-code model read right with the root's widest lead; left out when no candidate is read right by both."""
    rng = np.random.default_rng(0)
    candidates = test_split.select(range(min(UPLOAD_CANDIDATES, len(test_split))))
    digits, labels = [np.asarray(image) for image in candidates["image"]], np.asarray(list(candidates["label"]))
    made = {
        "drawing.png": [png_bytes(photos.drawing(digit, rng)) for digit in digits],
        "photo.jpg": [photos.phone_photo(digit, "plain", rng, long_side=PHOTO_SIDE) for digit in digits],
    }
    titles = {"drawing.png": "A drawing, black on white", "photo.jpg": "A phone photo"}
    examples = []
    for file, contents in made.items():
        pictures = [ImageOps.exif_transpose(Image.open(io.BytesIO(content))).convert("RGB") for content in contents]
        read = read_by_both(vit, vit_processor, run, pictures, labels)
        if read.right.any():
            best = max(np.flatnonzero(read.right), key=lambda index: read.lead[index])
            outputs = top_outputs(read.probabilities[best], vit.config.id2label)
            examples.append(WidgetExample(file, titles[file], contents[best], outputs))
    return examples


# --- the model card -----------------------------------------------------------------------------------


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
        license=LICENSE,
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


def markdown_table(header: tuple, *rows: tuple) -> str:
    lines = [header, ("---",) * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def architecture_section(config: MnistViTConfig, num_parameters: int) -> str:
    grid = config.image_size // config.patch_size
    table = markdown_table(
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
    return f"""## Architecture

A Vision Transformer (Dosovitskiy et al., 2021) sized for MNIST, trained from scratch.

{table}
"""


def augmentation_text(args: dict) -> str:
    steps = [
        f"rotation up to {args['rotation']:g} degrees" if args["rotation"] else "",
        f"shift up to {args['translate']:.0%} of the side" if args["translate"] else "",
        f"zoom {1 - args['zoom']:g} to {1 + args['zoom']:g}" if args["zoom"] else "",
        f"shear up to {args['shear']:g} degrees" if args["shear"] else "",
        "horizontal flips" if args["hflip"] else "",
    ]
    return ", ".join(step for step in steps if step) or "none"


def training_section(args: dict | None, state: dict | None) -> str:
    if args is None:
        return f"## Training\n\n{not_recorded('train_args.json')}\n"
    per_device = state["train_batch_size"] if state else args["per_device_train_batch_size"]
    batch_size = per_device * args["world_size"] * args["gradient_accumulation_steps"]
    steps = f"{state['global_step']} optimizer steps" if state else "optimizer steps not recorded: no `trainer_state.json`"
    warmup = args["warmup_steps"]
    warmup = f"{warmup:.0%} of the steps" if warmup < 1 else f"{int(warmup)} steps"
    precision = "bf16" if args["bf16"] else "fp16" if args["fp16"] else "fp32"
    kept = (
        f"The checkpoint with the best validation {args['metric_for_best_model']} is the one published."
        if args["load_best_model_at_end"] else "The model at the end of training is the one published."
    )
    table = markdown_table(
        ("hyperparameter", "value"),
        ("epochs", f"{args['num_train_epochs']:g} ({steps})"),
        ("batch size", batch_size),
        ("optimizer", f"{args['optim']} (betas {args['adam_beta1']}, {args['adam_beta2']}), weight decay {args['weight_decay']}"),
        ("learning rate", f"{args['learning_rate']}, {args['lr_scheduler_type']} schedule, warmup {warmup}"),
        ("label smoothing", args["label_smoothing_factor"]),
        ("gradient clipping", args["max_grad_norm"]),
        ("augmentation (random affine, per batch)", augmentation_text(args)),
        ("validation split", f"{args['validation_size']} digits held out of train"),
        ("precision", precision),
        ("seed", args["seed"]),
    )
    start = f"Fine-tuned from `{args['model_name_or_path']}`" if args["model_name_or_path"] else "Trained from scratch"
    return f"""## Training

{start} with the Hugging Face `Trainer` on MNIST's training split, less a part held out for
validation, by the mnist-vit package's `train.py`. {kept}

{table}
"""


def results_section(test_results: dict | None, eval_results: dict | None, figures: list[str]) -> str:
    if test_results is None:
        return f"## Results\n\n{not_recorded('test_results.json')}\n"
    per_class = test_results["test_per_class"]
    overall = markdown_table(
        ("accuracy", "macro F1", "macro precision", "macro recall", "loss"),
        (f"**{test_results['test_accuracy']:.2%}**", *(f"{test_results[key]:.4f}" for key in (
            "test_f1_macro", "test_precision_macro", "test_recall_macro", "test_loss"))),
    )
    by_digit = markdown_table(
        ("digit", "precision", "recall", "F1", "support"),
        *((label, *(f"{scores[key]:.4f}" for key in ("precision", "recall", "f1")), scores["support"])
          for label, scores in per_class.items()),
    )
    total = sum(scores["support"] for scores in per_class.values())
    validation = (
        f"Accuracy on the held-out validation digits: {eval_results['eval_accuracy']:.2%}."
        if eval_results else "Validation accuracy: not recorded (no `eval_results.json`)."
    )
    pictures = {
        "confusion_matrix.png": "Confusion matrix (rows: true digit, columns: predicted):\n\n![confusion matrix](confusion_matrix.png)",
        "misclassified.png": "The test digits it gets wrong, most confident first:\n\n![misclassified test digits](misclassified.png)",
    }
    shown = "".join(f"\n{pictures[figure]}\n" for figure in figures)
    return f"""## Results

On {total:,} digits of MNIST's test split:

{overall}

{validation} Per digit:

{by_digit}
{shown}"""


def usage_section(repo_id: str, revision: str | None, root_is_upload_model: bool) -> str:
    where = f'"{repo_id}"' + (f', revision="{revision}"' if revision else "")
    remote = f'{where}, subfolder="{REMOTE_CODE_FOLDER}"'
    root = (
        "a second model of the same architecture, trained to read uploads through that processor (see *The model "
        "at the root*)" if root_is_upload_model else
        "the same model; on MNIST digits both predict the same, but for the few that the remote-code processor "
        "re-centres by a pixel"
    )
    pipeline_note = "drawings, typed digits, photos and MNIST digits" if root_is_upload_model else (
        "MNIST-like pictures, see *Inputs and limits*"
    )
    return f"""## How to use

At the root, a plain transformers `ViTForImageClassification` with a standard `ViTImageProcessor`: no remote
code, so the pipeline, Inference Providers and Endpoints, transformers.js (`onnx/`) and ONNX tools all serve it.
In `{REMOTE_CODE_FOLDER}/`, the mnist-vit model with its own image processor, which prepares any picture of a
digit the way MNIST was made. The root holds {root}.

With the pipeline ({pipeline_note}):

```python
from transformers import pipeline

classifier = pipeline("image-classification", model={where})
classifier("digit.png")
```

With plain transformers:

```python
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

processor = AutoImageProcessor.from_pretrained({where})
model = AutoModelForImageClassification.from_pretrained({where})
inputs = processor(Image.open("digit.png"), return_tensors="pt")
with torch.no_grad():
    predicted = model(**inputs).logits.argmax(-1).item()
print(model.config.id2label[predicted])
```

With remote code, for photos, scans and drawings (dark or light ink, any size):

```python
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

model = AutoModelForImageClassification.from_pretrained({remote}, trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained({remote}, trust_remote_code=True)
classifier = pipeline("image-classification", model=model, image_processor=processor)
classifier("photo_of_a_digit.jpg")
```

With the mnist-vit package installed, the same model without remote code:

```python
from mnist_vit import MnistViTForImageClassification, MnistViTImageProcessor

model = MnistViTForImageClassification.from_pretrained({remote})
processor = MnistViTImageProcessor.from_pretrained({remote})
```
"""


def limits_section(root_is_upload_model: bool) -> str:
    root = (
        "The root model's `ViTImageProcessor` only resizes the whole picture to 28x28 and normalises; the root "
        "model learned to read a digit anywhere in the frame, dark or light, from 20% of its side up, but a "
        "picture with much else in it (a page of text, several digits) is read worse. The model in "
        f"`{REMOTE_CODE_FOLDER}/` finds, crops, scales and centres the digit first, as MNIST was made."
        if root_is_upload_model else
        "The root model's `ViTImageProcessor` only resizes to 28x28 and normalises: it expects MNIST-like "
        "pictures, a white digit on a black background, centred, filling about 20 of the 28 pixels (like the "
        "widget examples). Dark ink on light paper, off-centre or small digits are misread. The model in "
        f"`{REMOTE_CODE_FOLDER}/` inverts, crops, scales and centres any picture first, as MNIST was made."
    )
    return f"""## Inputs and limits

- One handwritten digit per picture, 0 to 9. The model always answers with a digit, also for pictures
  that show none.
- {root}
- Accuracy is measured on MNIST's test split and on synthetic drawings, typed digits and photos made from
  it: handwriting from other sources, other scripts of digits, and printed or scanned documents will score
  lower. Do not use it where a wrong digit does harm without a person checking it.
"""


def stock_pipeline_table(measured: dict | None) -> str:
    if measured is None:
        return not_recorded(STOCK_PIPELINE_RESULTS)
    rows = ((name, f"{result['pictures']:,}", f"{result['accuracy']:.2%}") for name, result in measured.items())
    return (
        'Measured by `bench/bench_root.py` through `pipeline("image-classification")` in a process that cannot '
        f"import mnist-vit:\n\n{markdown_table(('pictures', 'count', 'accuracy'), *rows)}"
    )


def root_section(root: TrainedRun | None, onnx: OnnxAgreement) -> str:
    """Which model is at the root and why, with what it measured; and its ONNX files."""
    onnx_text = (
        f"`onnx/model.onnx` (fp32: logits within {onnx.fp32_max_difference:.1g} of torch's) and "
        f"`onnx/model_quantized.onnx` (8-bit: torch's top label on {onnx.quantized_agreement:.2%}), checked on "
        f"{onnx.digits:,} MNIST test digits, are the root for transformers.js and ONNX Runtime."
    )
    if root is None:
        return f"""## The model at the root

The root holds this model, exported to a plain `ViTForImageClassification` (its gray input folded into an RGB
first layer). Through the stock `ViTImageProcessor`, which does not find, invert or centre the digit, it reads
MNIST-like pictures only. {onnx_text}
"""
    mnist = f"{root.test_results['test_accuracy']:.2%}" if root.test_results else "not recorded"
    return f"""## The model at the root

Everything that serves this repo without remote code (the widget, Inference Providers and Endpoints,
transformers.js, ONNX tools) uses the root, and the root's stock `ViTImageProcessor` only resizes the whole
picture to 28x28: no invert, crop or centring. A model trained on MNIST alone gets drawings, typed digits and
photos read that way about as often right as chance. So the root holds a second model of the same architecture
(`{root.path.name}`), trained on MNIST digits made to look like uploads after that processor: either ink
polarity, the digit 20-100% of the frame anywhere in it, paper tint, light gradients, ruled lines, blur and
noise. Its MNIST test accuracy (through the mnist-vit processor): {mnist}.

{stock_pipeline_table(root.stock_pipeline_results)}

{onnx_text}
"""


def card_text(run: TrainedRun, root: TrainedRun | None, onnx: OnnxAgreement, repo_id: str, revision: str | None) -> str:
    parameters = run.model.num_parameters()
    accuracy = (
        f"{run.test_results['test_accuracy']:.2%} accuracy on MNIST's test split" if run.test_results
        else "its test accuracy was not recorded"
    )
    return f"""# {repo_id.split("/")[1]}

A small Vision Transformer that recognises handwritten digits, trained on
[MNIST](https://huggingface.co/datasets/{MNIST_HUB_NAME}): {accuracy}
with {parameters:,} parameters.

{architecture_section(run.model.config, parameters)}
{training_section(run.train_args, run.trainer_state)}
{results_section(run.test_results, run.eval_results, run.figures)}
{root_section(root, onnx)}
{usage_section(repo_id, revision, root is not None)}
{limits_section(root is not None)}
## Citation

MNIST:

```bibtex
{MNIST_CITATION}
```
"""


def build_model_card(
    run: TrainedRun, root: TrainedRun | None, onnx: OnnxAgreement, repo_id: str, revision: str | None,
    examples: list[WidgetExample],
) -> ModelCard:
    """The card of `run`, published with `root` at the repo's root (None: `run` itself is there)."""
    data = card_data(run, repo_id, revision, examples)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_text(run, root, onnx, repo_id, revision)}")


# --- staging and checking -----------------------------------------------------------------------------


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


# --- the Hub ------------------------------------------------------------------------------------------


@contextmanager
def hub_errors(api: HfApi, repo_id: str) -> Iterator[None]:
    """Turn the Hub client's errors into one sentence that says what to do.

    huggingface_hub 2.x sends requests with `httpx2`: its transport errors are the network failures.
    """
    try:
        yield
    except OfflineModeIsEnabled as err:
        raise UserError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it to publish.") from err
    except httpx2.TransportError as err:
        raise UserError(
            f"Cannot reach the Hugging Face Hub at {api.endpoint} ({type(err).__name__}): "
            "check your network connection (and HF_ENDPOINT if you set it)."
        ) from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            raise UserError(
                "The Hub rejected your token (401 Unauthorized): it is wrong, expired or revoked. "
                "Run `hf auth login` with a token that has write access, or pass one with --token."
            ) from err
        if status == 403:
            raise UserError(
                f"Your token may not write to {repo_id} (403 Forbidden): use a token with write access to "
                "that namespace, or publish under your own username."
            ) from err
        if status == 404:
            raise UserError(
                f"{repo_id} was not found, or your token cannot see it (404 Not Found): check --repo_id, and "
                "that the token has access to that repo or namespace."
            ) from err
        raise UserError(f"The Hub refused the upload ({status}): {err.server_message or err}") from err


def check_write_access(api: HfApi, repo_id: str) -> None:
    """Refuse, before building anything, a token that cannot write or a namespace the account does not own."""
    with hub_errors(api, repo_id):
        account = api.whoami()
    if account.get("auth", {}).get("accessToken", {}).get("role") == "read":
        raise UserError(
            f"Your token for {account['name']} is read-only: create one with write access at "
            "https://huggingface.co/settings/tokens, then run `hf auth login` or pass it with --token."
        )
    namespaces = [account["name"], *(org["name"] for org in account.get("orgs", []))]
    namespace = repo_id.split("/")[0]
    if namespace not in namespaces:
        raise UserError(
            f"You are logged in as {account['name']}, who cannot publish under {namespace!r}: "
            f"choose --repo_id in {', '.join(repr(name) for name in namespaces)}."
        )


def upload(
    api: HfApi, folder: Path, repo_id: str, private: bool, revision: str | None, create_pr: bool, commit_message: str
) -> str:
    """Create the repo if needed and commit every file of `folder` in one commit; returns the URL to see it."""
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]
    with hub_errors(api, repo_id):
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)  # `private` applies to a new repo only
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id, operations, commit_message=commit_message, revision=revision, create_pr=create_pr
        )
    if commit.pr_url:
        return commit.pr_url
    return f"{repo_url}/tree/{quote(revision, safe='')}" if revision else str(repo_url)


def check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserError(f"--repo_id {repo_id!r} is not a valid repo id: {err}") from err
    if "/" not in repo_id:
        raise UserError(f"--repo_id must name its namespace, as in your-username/{repo_id}.")


def publish(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    data_dir: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    dry_run: bool = False,
    staging_dir: str | os.PathLike | None = None,
    root_model: str | os.PathLike | None = None,
) -> str | None:
    """Build the repo of the run in `model_dir`, check it, and (unless `dry_run`) upload it to `repo_id`.

    Returns the URL of the published revision (or pull request); None for a dry run. `data_dir` holds
    MNIST's IDX files, for the widget examples and the ONNX check; without it they come from the Hub's
    `ylecun/mnist`. `root_model` is a second trained mnist-vit folder to put at the root instead of the run's
    model (one trained to read uploads through the stock processor, recipes/root.yaml).
    """
    check_repo_id(repo_id)
    path = check_run_dir(model_dir)
    root_path = check_run_dir(root_model, "--root_model") if root_model is not None else None
    api = None
    if not dry_run:
        token = token or get_token()
        if token is None:
            raise UserError("You are not logged in to the Hugging Face Hub: run `hf auth login`, or pass --token.")
        api = HfApi(token=token)
        check_write_access(api, repo_id)
    run = load_run(path)
    root = load_run(root_path) if root_path is not None else None
    test_split = load_test_split(data_dir)
    with staging_folder(staging_dir) as folder:
        stage(run, root, repo_id, revision, test_split, folder)
        validate_staged_folder(folder)
        if dry_run:
            return None
        accuracy = f": {run.test_results['test_accuracy']:.2%} test accuracy" if run.test_results else ""
        message = commit_message or f"Upload mnist-vit{accuracy}"
        return upload(api, folder, repo_id, private, revision, create_pr, message)


__all__ = ["build_model_card", "check_write_access", "publish", "stage", "upload", "validate_staged_folder"]
