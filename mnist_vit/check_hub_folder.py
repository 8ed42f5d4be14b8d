"""Check a staged Hub folder the way its users will load it: `python check_hub_folder.py FOLDER`.

`staging.validate_staged_folder` runs this file in a fresh process, offline, outside the repository, with
the `mnist_vit` package made unimportable: whatever loads here loads for someone who only has
transformers. It checks that

- the root is a plain `ViTForImageClassification` that `pipeline("image-classification")` serves with
  no remote code, and labels each widget example (`examples/*.png`, `*.jpg`) as the card's `output:` says;
- the root's ONNX files (`onnx/model.onnx`, `onnx/model_quantized.onnx`) run with onnxruntime on the
  root's own preprocessing and label the widget examples the same way;
- `remote_code/` loads with `trust_remote_code=True` as the card tells, from the folder's own code,
  and labels the widget examples the same way.

On failure it prints what failed to stderr and exits with status 1. It imports only transformers,
huggingface_hub, onnxruntime and PIL.
"""

import sys
from pathlib import Path

import onnxruntime
from huggingface_hub import ModelCard
from PIL import Image, ImageOps
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, pipeline

REMOTE_CODE_FOLDER = "remote_code"
EXAMPLES_FOLDER = "examples"
ONNX_FILES = ("onnx/model.onnx", "onnx/model_quantized.onnx")


class CheckFailed(Exception):
    pass


def widget_labels(root: Path) -> dict[Path, str]:
    """{example picture: the label the card's widget says the model gives it}."""
    widget = ModelCard.load(root / "README.md").data.to_dict().get("widget") or []
    pictures = sorted(path for path in (root / EXAMPLES_FOLDER).iterdir() if path.suffix in (".png", ".jpg"))
    if not pictures:
        raise CheckFailed(f"the folder has no widget examples in {EXAMPLES_FOLDER}/")
    labels = {}
    for picture in pictures:
        entry = next((entry for entry in widget if entry.get("src", "").endswith(f"/{EXAMPLES_FOLDER}/{picture.name}")), None)
        if entry is None or not entry.get("output"):
            raise CheckFailed(f"the card's widget has no example with an output for {EXAMPLES_FOLDER}/{picture.name}")
        labels[picture] = entry["output"][0]["label"]
    return labels


def upright(picture: Path) -> Image.Image:
    """The picture as the pipeline loads it: turned as its EXIF says, in RGB."""
    with Image.open(picture) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def check_labels(classifier, expected: dict[Path, str], variant: str) -> None:
    for picture, label in expected.items():
        predicted = classifier(upright(picture), top_k=1)[0]["label"]
        if predicted != label:
            raise CheckFailed(f"{variant} labels {EXAMPLES_FOLDER}/{picture.name} as {predicted!r}, the card says {label!r}")


def check_onnx(root: Path, expected: dict[Path, str]) -> None:
    """Each ONNX file labels the widget examples as the card says, on the root processor's pixel values."""
    processor = AutoImageProcessor.from_pretrained(root)
    id2label = AutoConfig.from_pretrained(root).id2label
    pixel_values = processor([upright(picture) for picture in expected], return_tensors="np")["pixel_values"]
    for name in ONNX_FILES:
        session = onnxruntime.InferenceSession(root / name, providers=["CPUExecutionProvider"])
        logits = session.run(["logits"], {"pixel_values": pixel_values.astype("float32")})[0]
        for picture, label, predicted in zip(expected, expected.values(), logits.argmax(-1)):
            if id2label[int(predicted)] != label:
                raise CheckFailed(
                    f"{name} labels {EXAMPLES_FOLDER}/{picture.name} as {id2label[int(predicted)]!r}, the card says {label!r}"
                )


def check_plain_root(root: Path, expected: dict[Path, str]) -> None:
    config = AutoConfig.from_pretrained(root)
    if config.model_type != "vit" or getattr(config, "auto_map", None):
        raise CheckFailed(
            f"the root must be a plain ViT without remote code, its config has model_type {config.model_type!r} "
            f"and auto_map {getattr(config, 'auto_map', None)}"
        )
    check_labels(pipeline("image-classification", model=str(root)), expected, "the plain ViT at the root")


def check_remote_code(root: Path, expected: dict[Path, str]) -> None:
    model = AutoModelForImageClassification.from_pretrained(root, subfolder=REMOTE_CODE_FOLDER, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(root, subfolder=REMOTE_CODE_FOLDER, trust_remote_code=True)
    for loaded in (model, processor):
        if not type(loaded).__module__.startswith("transformers_modules."):
            raise CheckFailed(f"{REMOTE_CODE_FOLDER}/ loaded {type(loaded).__module__}, not the folder's own code")
    classifier = pipeline("image-classification", model=model, image_processor=processor)
    check_labels(classifier, expected, f"the remote-code model in {REMOTE_CODE_FOLDER}/")


def main(folder: str) -> int:
    root = Path(folder).resolve()
    step = "reading the card's widget examples"
    try:
        expected = widget_labels(root)
        step = "loading the root with pipeline('image-classification')"
        check_plain_root(root, expected)
        step = "running the root's ONNX files with onnxruntime"
        check_onnx(root, expected)
        step = f"loading {REMOTE_CODE_FOLDER}/ with trust_remote_code=True"
        check_remote_code(root, expected)
    except Exception as err:  # whatever breaks, the user learns which step and why, in one line
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"{step} failed: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.modules["mnist_vit"] = None  # the published repo must work without our package
    sys.exit(main(sys.argv[1]))
