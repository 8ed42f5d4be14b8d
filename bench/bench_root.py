"""What a published repo's root reads through the stock `pipeline("image-classification")`, as a new user meets it.

    python bench/bench_root.py --model checkpoints/mnist-vit-root [--data_dir ../shared/mnist] [--per_set 300] [--save]

`--model` is a trained mnist-vit folder, exported to a plain 3-channel ViT as push_to_hub.py does (or a plain
ViT folder, used as it is). Pictures made from MNIST test digits (mnist_vit/photos.py): black-on-white drawings,
digits typed in matplotlib's fonts, phone photos of the ordinary and of the hard conditions (`--per_set` split
evenly over the conditions; photos 600-1200 px on their long side, to keep the bench short: the processor shrinks
every picture to 28x28 alike), and all 10,000 MNIST test digits. They are read in a fresh process, outside the
repository, that cannot import `mnist_vit`: only transformers, the root's config and its stock ViTImageProcessor.
Prints one table with the issue's targets; `--save` also writes the figures beside the model
(`stock_pipeline_results.json`), where push_to_hub.py --root_model reads them for the card.
"""

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"drawings": 0.95, "typed": 0.90, "photos (ordinary)": 0.80, "photos (hard)": 0.80, "MNIST test": 0.993}
PHOTO_SIDE = (600, 1200)
BATCH_SIZE = 64
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def export_root(model: Path, folder: Path) -> None:
    """The plain ViT a published repo has at its root, from a trained mnist-vit folder (or a plain ViT's copy)."""
    config = json.loads((model / "config.json").read_text())
    if config["model_type"] == "vit":
        shutil.copytree(model, folder, dirs_exist_ok=True)
        return
    from mnist_vit import MnistViTForImageClassification, MnistViTImageProcessor
    from mnist_vit.export import export_to_vit

    vit, processor = export_to_vit(
        MnistViTForImageClassification.from_pretrained(model), MnistViTImageProcessor.from_pretrained(model)
    )
    vit.save_pretrained(folder)
    processor.save_pretrained(folder)


def font_paths() -> list[Path]:
    """matplotlib's fonts that set the ten digits as text: DejaVu, STIX General and Computer Modern."""
    import matplotlib

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = [path for path in sorted(fonts.glob("*.ttf")) if "Display" not in path.name]
    return [path for path in names if path.name.startswith(("DejaVuSans", "DejaVuSerif", "STIXGeneral", "cmr", "cmb",
                                                             "cmss", "cmtt", "cmti"))]


def write_pictures(data_dir: Path, per_set: int, folder: Path) -> dict[str, list[tuple[str, int]]]:
    """The pictures of each set as files in `folder`: {set: [(file name, label)]}."""
    from mnist_vit import photos
    from mnist_vit.data import read_idx

    digits, labels = (read_idx(data_dir / name) for name in TEST_FILES)
    rng = np.random.default_rng(0)
    sets = {}

    def save(name: str, pictures) -> None:
        sets[name] = []
        for index, (label, picture) in enumerate(pictures):
            path = folder / f"{name.replace(' ', '_').strip('()')}-{index}"
            if isinstance(picture, bytes):
                path = path.with_suffix(".jpg")
                path.write_bytes(picture)
            else:
                path = path.with_suffix(".png")
                picture.save(path)
            sets[name].append((path.name, int(label)))

    chosen = rng.choice(len(digits), per_set, replace=False)
    save("drawings", ((labels[i], photos.drawing(digits[i], rng)) for i in chosen))
    fonts = font_paths()
    save("typed", ((i % 10, photos.typed_digit(i % 10, str(fonts[i % len(fonts)]), rng)) for i in range(per_set)))
    for name, conditions, seed in (("photos (ordinary)", photos.ORDINARY_CONDITIONS, 1), ("photos (hard)", photos.HARD_CONDITIONS, 2)):
        taken = photos.photo_set(digits, labels, conditions, max(1, per_set // len(conditions)), seed, PHOTO_SIDE)
        save(name, ((label, jpeg) for _, label, jpeg in taken))
    return sets


def read_idx_plain(path: Path) -> np.ndarray:
    """An MNIST IDX file (gzipped), without the package: the fresh process may not import it."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_with_stock_pipeline(root: Path, pictures: Path, data_dir: Path) -> dict[str, float]:
    """In the fresh process: each set's accuracy through `pipeline("image-classification", model=root)`."""
    from transformers import pipeline

    classifier = pipeline("image-classification", model=str(root))
    sets = json.loads((pictures / "sets.json").read_text())
    accuracy = {}
    for name, files in sets.items():
        predicted = classifier([str(pictures / file) for file, _ in files], top_k=1, batch_size=BATCH_SIZE)
        accuracy[name] = float(np.mean([int(p[0]["label"]) == label for p, (_, label) in zip(predicted, files)]))
    digits, labels = (read_idx_plain(data_dir / name) for name in TEST_FILES)
    predicted = classifier([Image.fromarray(digit) for digit in digits], top_k=1, batch_size=BATCH_SIZE)
    accuracy["MNIST test"] = float(np.mean([int(p[0]["label"]) == label for p, label in zip(predicted, labels)]))
    return accuracy


def measure(model: Path, data_dir: Path, per_set: int) -> tuple[dict[str, float], dict[str, int]]:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        export_root(model, scratch / "root")
        (scratch / "pictures").mkdir()
        sets = write_pictures(data_dir, per_set, scratch / "pictures")
        (scratch / "pictures" / "sets.json").write_text(json.dumps(sets))
        # A copy of this script in an empty folder: the repository's folders are not on its sys.path.
        script = shutil.copy(__file__, scratch)
        result = subprocess.run(
            [sys.executable, script, "--read", str(scratch / "root"), str(scratch / "pictures"), str(data_dir.resolve())],
            cwd=scratch, capture_output=True, text=True,
        )
    if result.returncode != 0:
        sys.exit(f"The fresh process failed:\n{result.stderr[-3000:]}")
    counts = {name: len(files) for name, files in sets.items()} | {"MNIST test": 10_000}
    return json.loads(result.stdout.strip().splitlines()[-1]), counts


def print_table(model: Path, accuracy: dict[str, float], counts: dict[str, int]) -> None:
    print(f"{model} at the root, read by the stock pipeline (no mnist_vit, no remote code)\n")
    print("| set | pictures | accuracy | target | |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, value in accuracy.items():
        target = TARGETS[name]
        verdict = "met" if value >= target else f"missed by {(target - value) * 100:.2f} points"
        print(f"| {name} | {counts[name]:,} | {value:.2%} | {target:.1%} | {verdict} |")


def main() -> None:
    if sys.argv[1:2] == ["--read"]:
        sys.modules["mnist_vit"] = None  # what a user without our package has
        root, pictures, data_dir = map(Path, sys.argv[2:5])
        print(json.dumps(read_with_stock_pipeline(root, pictures, data_dir)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "checkpoints" / "mnist-vit-root")
    parser.add_argument("--data_dir", type=Path, default=REPO_ROOT.parent / "shared" / "mnist")
    parser.add_argument("--per_set", type=int, default=300, help="Pictures per set (photos: split over conditions).")
    parser.add_argument("--save", action="store_true", help="Write the figures to the model folder for its card.")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model} is no model folder (it has no config.json): give a trained mnist-vit "
                     "folder, such as checkpoints/mnist-vit-root, or a plain ViT's.")
    for name in TEST_FILES:
        if not (args.data_dir / name).is_file():
            parser.error(f"--data_dir {args.data_dir} has no {name}: give the folder of MNIST's gzipped IDX files.")
    if args.per_set < 1:
        parser.error(f"--per_set must be at least 1, got {args.per_set}.")
    accuracy, counts = measure(args.model, args.data_dir, args.per_set)
    print_table(args.model, accuracy, counts)
    if args.save:
        from mnist_vit.run_folder import STOCK_PIPELINE_RESULTS

        results = {name: {"pictures": counts[name], "accuracy": round(value, 4)} for name, value in accuracy.items()}
        (args.model / STOCK_PIPELINE_RESULTS).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
