"""Read digits from pictures: files, folders and glob patterns; any format Pillow reads; any size or colours.

    python predict.py digit.png photos/ "scans/*.jpg"
    python predict.py digit.png --top_k 5 --json
    python predict.py digit.png --model user/mnist-vit      # another local folder or Hub repo

One line per picture, in order: its label, probability and top-k; with --json one JSON object per line,
`{"file", "label", "score", "top_k"}` or `{"file", "error"}`. A file that cannot be read is reported and the
others still run; the exit status is 1 if any picture failed, 2 if the model cannot be loaded.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers.utils import logging

from mnist_vit.errors import exit_status
from mnist_vit.inference import SHIPPED_MODEL, DigitClassifier, ImageReadError, Prediction, find_images, read_image

BATCH_SIZE = 64  # pictures classified together


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Read handwritten or typed digits from pictures.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="Picture files, folders or glob patterns.")
    parser.add_argument("--model", default=str(SHIPPED_MODEL), help="Model folder or Hub repo (default: %(default)s).")
    parser.add_argument("--top_k", type=int, default=3, help="How many labels to list per picture (default: 3).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object per line.")
    arguments = parser.parse_args(argv)
    if arguments.top_k < 1:
        parser.error(f"--top_k must be at least 1, got {arguments.top_k}.")
    return arguments


def classify_batch(classifier: DigitClassifier, paths: list[Path], top_k: int) -> list[Prediction | str]:
    """A prediction, or an error sentence, for each path. Each picture is preprocessed as soon as it is read,
    so that only one decoded photo is in memory at a time, and the model sees the batch at once."""
    results: list[Prediction | str | None] = [None] * len(paths)
    pixel_values = {}
    for index, path in enumerate(paths):
        try:
            pixel_values[index] = classifier.preprocess([read_image(path)])
        except ImageReadError as error:
            results[index] = str(error)
    if pixel_values:
        predictions = classifier.classify(torch.cat(list(pixel_values.values())), top_k=top_k)
        for index, prediction in zip(pixel_values, predictions):
            results[index] = prediction or "The picture is blank: no ink stands out from its background."
    return results


def format_line(path: Path, result: Prediction | str, as_json: bool) -> str:
    """One line per picture: JSON escapes what needs it, and text output escapes control characters (a
    newline or a terminal escape in a file name) and bytes that are not text."""
    if isinstance(result, str):
        return json.dumps({"file": str(path), "error": result}) if as_json else escaped(f"{path}: error: {result}")
    if as_json:
        top_k = [{"label": entry["label"], "score": round(entry["score"], 4)} for entry in result.top_k]
        return json.dumps({"file": str(path), "label": result.label, "score": round(result.score, 4), "top_k": top_k})
    top_k = "  ".join(f"{entry['label']} {entry['score']:.1%}" for entry in result.top_k)
    return escaped(f"{path}: {result.label} ({result.score:.1%})  top {len(result.top_k)}: {top_k}")


def escaped(text: str) -> str:
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in text)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    logging.disable_progress_bar()  # the weight-loading bar would interleave with the results on a terminal
    logging.set_verbosity_error()  # a model that does not load is one sentence below, not also a loading report
    torch.set_num_threads(1)  # a 0.8M-parameter model gains nothing from more; see bench/bench_predict.py
    classifier = DigitClassifier.from_pretrained(arguments.model)
    paths = find_images(arguments.images)
    failures = 0
    for start in range(0, len(paths), BATCH_SIZE):
        batch = paths[start : start + BATCH_SIZE]
        for path, result in zip(batch, classify_batch(classifier, batch, arguments.top_k)):
            failures += isinstance(result, str)
            print(format_line(path, result, arguments.json), flush=True)
    if failures:
        print(f"{failures} of {len(paths)} pictures could not be classified.", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(exit_status(lambda: main(sys.argv[1:])))
