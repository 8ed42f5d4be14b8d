"""Accuracy of predict.py on the pictures people have: phone photos per condition, drawings, typed digits, MNIST.

    python bench/bench_reading.py [--model checkpoints/mnist-vit] [--per_condition 20] [--seed 0]

Phone photos (mnist_vit.photos, made from the first 5,000 MNIST training digits, 600-4,000 px, JPEG files with
EXIF) are written to a folder and read by `predict.py --json` in a subprocess, exactly as a user runs it; so
are black-on-white drawings of MNIST test digits and digits typed in the fonts matplotlib ships. MNIST test
goes through the image processor in process.
Prints one table per set, per condition, and the ordinary / hard totals.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mnist_vit import MnistViTForImageClassification, MnistViTImageProcessor  # noqa: E402
from mnist_vit.data import read_idx  # noqa: E402
from mnist_vit.inference import SHIPPED_MODEL  # noqa: E402
from mnist_vit.photos import HARD_CONDITIONS, ORDINARY_CONDITIONS, drawing, phone_photo, typed_digit  # noqa: E402

MNIST_DIR = REPO_ROOT.parent / "shared" / "mnist"
FONTS = sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))
TEXT_FONTS = [  # fonts with digits (the Display cuts have none)
    font for font in FONTS if font.stem.startswith(("DejaVu", "STIXGeneral", "cmr", "cmss", "cmtt", "cmb"))
    and "Display" not in font.stem
]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--per_condition", type=int, default=20, help="Photos per condition.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long_side", type=int, nargs=2, default=(600, 4000), help="Photo sizes, in pixels.")
    return parser.parse_args()


def write_sets(folder: Path, per_condition: int, seed: int, long_side: tuple[int, int]) -> dict[str, str]:
    """Picture files named SET__CONDITION__INDEX.ext; returns {file name: true label}."""
    rng = np.random.default_rng(seed)
    train = read_idx(MNIST_DIR / "train-images-idx3-ubyte.gz")[:5000]
    train_labels = read_idx(MNIST_DIR / "train-labels-idx1-ubyte.gz")[:5000]
    test = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    labels = {}
    for kind, conditions in (("ordinary", ORDINARY_CONDITIONS), ("hard", HARD_CONDITIONS)):
        for condition in conditions:
            for index in rng.choice(len(train), per_condition, replace=False):
                name = f"{kind}__{condition.replace(' ', '-')}__{index}.jpg"
                (folder / name).write_bytes(phone_photo(train[index], condition, rng, long_side))
                labels[name] = str(train_labels[index])
    for index in rng.choice(len(test), 10 * per_condition, replace=False):
        name = f"drawn__black-on-white__{index}.png"
        drawing(test[index], rng).save(folder / name)
        labels[name] = str(test_labels[index])
    for font in TEXT_FONTS:
        for digit in range(10):
            name = f"typed__{font.stem}__{digit}.png"
            typed_digit(digit, str(font), rng).save(folder / name)
            labels[name] = str(digit)
    return labels


def predict_files(folder: Path, model: str) -> dict[str, str | None]:
    """predict.py --json on the folder: {file name: label, or None for an error or a blank}."""
    command = [sys.executable, str(REPO_ROOT / "predict.py"), str(folder), "--model", model, "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {Path(line["file"]).name: line.get("label") for line in lines}


def mnist_test_accuracy(model_path: str) -> float:
    model = MnistViTForImageClassification.from_pretrained(model_path).eval()
    processor = MnistViTImageProcessor.from_pretrained(model_path)
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = torch.from_numpy(read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    pixel_values = processor(list(images), return_tensors="pt").pixel_values
    with torch.no_grad():
        predictions = torch.cat([model(pixel_values=batch).logits.argmax(-1) for batch in pixel_values.split(500)])
    return (predictions == labels).float().mean().item()


def main() -> None:
    arguments = parse_arguments()
    with tempfile.TemporaryDirectory() as folder:
        labels = write_sets(Path(folder), arguments.per_condition, arguments.seed, tuple(arguments.long_side))
        predicted = predict_files(Path(folder), arguments.model)
    rows: dict[tuple[str, str], list[bool]] = {}
    for name, label in labels.items():
        kind, condition, _ = name.split("__")
        rows.setdefault((kind, condition if kind in ("ordinary", "hard") else "all"), []).append(
            predicted.get(name) == label
        )
    print(f"{arguments.model}; photos {arguments.long_side[0]}-{arguments.long_side[1]} px, seed {arguments.seed}")
    print("| set | condition | pictures | read right |\n| --- | --- | --- | --- |")
    for (kind, condition), right in rows.items():
        print(f"| {kind} | {condition.replace('-', ' ')} | {len(right)} | {np.mean(right):.1%} |")
    for kind in ("ordinary", "hard"):
        right = [ok for (each, _), oks in rows.items() if each == kind for ok in oks]
        print(f"| **{kind} photos** | all | {len(right)} | **{np.mean(right):.1%}** |")
    print(f"| MNIST test | through the image processor | 10000 | {mnist_test_accuracy(arguments.model):.2%} |")


if __name__ == "__main__":
    main()
