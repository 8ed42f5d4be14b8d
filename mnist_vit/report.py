"""The report on a trained model: the Trainer's metrics with per-class scores, calibration and figures, as files.

The numbers the Trainer computed with the metric module (`load_metric`: accuracy, macro precision / recall / F1)
are written as they are; `write_report` adds what only the report needs (scikit-learn's per-class scores and
confusion matrix, the calibration error) and writes `test_results.json`, `classification_report.txt`,
`confusion_matrix.png`, `misclassified.png` and `reliability_diagram.png`; `write_training_curves` draws a run's
log history as `training_curves.png`. Figures are drawn on `matplotlib.figure.Figure` objects: no pyplot, no display.
"""

import json
import math
import os
from pathlib import Path

import evaluate
import numpy as np
from matplotlib.figure import Figure
from scipy.special import softmax
from sklearn.metrics import classification_report, confusion_matrix

METRICS_PATH = str(Path(__file__).resolve().parent / "metrics" / "classification_metrics.py")
MAX_MISCLASSIFIED_SHOWN = 100
MISCLASSIFIED_COLUMNS = 10
CALIBRATION_BINS = 15


def load_metric() -> evaluate.EvaluationModule:
    """The project's `evaluate` metric (accuracy, macro precision / recall / F1), loaded by path: no Hub needed."""
    return evaluate.load(METRICS_PATH)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """How far confidence is from accuracy: the top score's examples in `bins` equal-width bins, each bin's
    |accuracy - mean confidence| weighted by its share of examples (0: a score of 0.9 is right 90% of the time)."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    accuracy, mean_confidence, counts = reliability_bins(confidence, correct, bins)
    return float(np.sum(counts * np.abs(accuracy - mean_confidence)) / len(labels))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: accuracy, mean confidence and count (empty bins: 0, 0, 0)."""
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (k/bins, (k+1)/bins] -> k
    counts = np.bincount(index, minlength=bins)
    seen = np.maximum(counts, 1)
    return np.bincount(index, correct, bins) / seen, np.bincount(index, confidence, bins) / seen, counts


def per_class_metrics(predictions, references, label_names: list[str]) -> dict[str, dict[str, float]]:
    """{label name: {"precision", "recall", "f1", "support"}} for every class (scikit-learn's, 0 where undefined)."""
    scores = classification_report(
        references, predictions, labels=range(len(label_names)), target_names=label_names, output_dict=True,
        zero_division=0,
    )
    return {
        name: {key: scores[name][key] for key in ("precision", "recall")}
        | {"f1": scores[name]["f1-score"], "support": int(scores[name]["support"])}
        for name in label_names
    }


def most_confident_mistakes(
    labels: np.ndarray, probabilities: np.ndarray, limit: int = MAX_MISCLASSIFIED_SHOWN
) -> np.ndarray:
    """Indices of the wrongly predicted examples, the most confident prediction first, at most `limit`."""
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:limit]


def write_report(
    output_dir: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    logits: np.ndarray,
    label_names: list[str],
    metrics: dict,
    split: str = "test",
    temperature: float | None = None,
) -> dict:
    """Write the report on one split to `output_dir` and return what `test_results.json` holds.

    images: uint8 (N, H, W); labels: (N,); logits: (N, C); metrics: `Trainer.predict(..., metric_key_prefix="test")
    .metrics` (accuracy, macro precision / recall / F1, loss, runtime), written as they are. The JSON adds
    `test_split` (the split reported on), `test_ece` (expected calibration error), `test_per_class` and
    `test_confusion_matrix` (rows = true class, columns = predicted). With the `temperature` folded into the
    model (calibration.py), it adds the temperature and `test_ece_uncalibrated` (of `logits * temperature`),
    and the reliability diagram shows both.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels).astype(np.int64)
    probabilities = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    predictions = probabilities.argmax(axis=1)
    every_label = range(len(label_names))

    written = {"test_split": split, **metrics, "test_ece": expected_calibration_error(probabilities, labels)}
    calibrations = {"calibrated" if temperature else "model": probabilities}
    if temperature is not None:
        uncalibrated = softmax(np.asarray(logits, dtype=np.float64) * temperature, axis=1)
        written["temperature"] = temperature
        written["test_ece_uncalibrated"] = expected_calibration_error(uncalibrated, labels)
        calibrations = {"before (T = 1)": uncalibrated, f"after (T = {temperature:.3f})": probabilities}
    written["test_per_class"] = per_class_metrics(predictions, labels, label_names)
    confusion = confusion_matrix(labels, predictions, labels=every_label)
    written["test_confusion_matrix"] = confusion.tolist()

    (output_dir / "test_results.json").write_text(json.dumps(written, indent=2) + "\n")
    table = classification_report(
        labels, predictions, labels=every_label, target_names=label_names, digits=4, zero_division=0
    )
    (output_dir / "classification_report.txt").write_text(f"Reported on {split}: {len(labels)} examples\n\n{table}")
    plot_reliability_diagram(calibrations, labels).savefig(output_dir / "reliability_diagram.png", dpi=100)
    plot_confusion_matrix(confusion, label_names).savefig(output_dir / "confusion_matrix.png", dpi=100)
    mistakes = most_confident_mistakes(labels, probabilities)
    mistakes_figure = plot_misclassified(np.asarray(images), labels, probabilities, mistakes, label_names)
    mistakes_figure.savefig(output_dir / "misclassified.png", dpi=100)
    return written


def plot_confusion_matrix(confusion: np.ndarray, label_names: list[str]) -> Figure:
    """Counts as a heat map, annotated, rows = true class, columns = predicted class."""
    size = max(4.0, 0.6 * len(label_names) + 2)
    figure = Figure(figsize=(size, size), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(confusion, cmap="Blues")
    ticks = range(len(label_names))
    axes.set(xticks=ticks, yticks=ticks, xticklabels=label_names, yticklabels=label_names)
    axes.set(xlabel="predicted", ylabel="true")
    total = confusion.sum()
    accuracy = np.trace(confusion) / total if total else 0.0
    axes.set_title(f"confusion matrix: {total} examples, accuracy {accuracy:.2%}")
    # Dark cells get white text so every count stays readable.
    threshold = confusion.max() / 2
    for (true, predicted), count in np.ndenumerate(confusion):
        color = "white" if count > threshold else "black"
        axes.text(predicted, true, str(count), ha="center", va="center", fontsize=8, color=color)
    return figure


def plot_misclassified(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, indices: np.ndarray, label_names: list[str]
) -> Figure:
    """A grid of the examples at `indices`, titled "true 7 / pred 2 (0.98)"; a note when there are none.

    One axes holds the grid (an axes per digit took 5 s to draw for a hundred mistakes on a slow CPU)."""
    if len(indices) == 0:
        figure = Figure(figsize=(4, 2))
        figure.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=16)
        return figure
    columns = min(MISCLASSIFIED_COLUMNS, len(indices))
    rows = math.ceil(len(indices) / columns)
    height, width = images.shape[1:3]
    pixels_per_inch = width / 1.1  # each digit shown 1.1 inches wide, whatever its size
    margin, title_room = 0.1 * pixels_per_inch, 0.3 * pixels_per_inch
    cell_width, cell_height = width + 2 * margin, height + title_room + margin
    figure = Figure(figsize=(cell_width * columns / pixels_per_inch, cell_height * rows / pixels_per_inch))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set(xlim=(0, cell_width * columns), ylim=(cell_height * rows, 0))
    axes.axis("off")
    for position, index in enumerate(indices):
        row, column = divmod(position, columns)
        left, top = column * cell_width + margin, row * cell_height + title_room
        axes.imshow(images[index], cmap="gray", vmin=0, vmax=255, extent=(left, left + width, top + height, top))
        predicted = probabilities[index].argmax()
        title = f"true {label_names[labels[index]]} / pred {label_names[predicted]} ({probabilities[index, predicted]:.2f})"
        axes.text(left + width / 2, top - margin / 2, title, ha="center", va="bottom", fontsize=7)
    return figure


def plot_reliability_diagram(probabilities: dict[str, np.ndarray], labels: np.ndarray) -> Figure:
    """Accuracy against confidence per bin, one line per set of probabilities, ECE in the legend; the
    diagonal is perfect calibration. Bins with no examples are left out."""
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    for name, scores in probabilities.items():
        confidence, correct = scores.max(axis=1), scores.argmax(axis=1) == labels
        accuracy, mean_confidence, counts = reliability_bins(confidence, correct, CALIBRATION_BINS)
        shown = counts > 0
        ece = expected_calibration_error(scores, labels)
        axes.plot(mean_confidence[shown], accuracy[shown], marker="o", label=f"{name}: ECE {ece:.2%}")
    axes.set(xlabel="confidence (top score)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    axes.set_title(f"reliability: {len(labels)} examples, {CALIBRATION_BINS} bins")
    axes.legend(loc="upper left")
    return figure


def write_training_curves(output_dir: str | os.PathLike, log_history: list[dict]) -> None:
    """`training_curves.png`: training and validation loss, and validation accuracy, against the epoch."""
    train = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry]
    evaluations = [entry for entry in log_history if "eval_loss" in entry]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    if train:
        loss_axes.plot(*zip(*train), label="training")
    if evaluations:
        epochs = [entry["epoch"] for entry in evaluations]
        loss_axes.plot(epochs, [entry["eval_loss"] for entry in evaluations], marker="o", label="validation")
        if all("eval_accuracy" in entry for entry in evaluations):
            accuracy_axes.plot(epochs, [entry["eval_accuracy"] for entry in evaluations], marker="o")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axes.legend()
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    figure.savefig(Path(output_dir) / "training_curves.png", dpi=100)
