"""mnist_vit.report and the local `evaluate` metric module."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import softmax

from conftest import REPO_ROOT
from mnist_vit import report

DIGIT_NAMES = [str(digit) for digit in range(10)]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A hand example: per class (precision, recall) = 0: (1, 1/2), 1: (1/2, 1/2), 2: (2/3, 1).
PREDICTIONS = [0, 1, 1, 2, 2, 2]
REFERENCES = [0, 1, 0, 2, 2, 1]


@pytest.mark.slow
def test_metric_module_loads_by_path_offline(tmp_path):
    script = (
        "import json; from mnist_vit.report import load_metric; metric = load_metric(); "
        f"print(json.dumps([metric.compute(predictions={PREDICTIONS}, references={REFERENCES}), "
        "metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=4)]))"
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path), "HF_METRICS_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    occurring, all_four = json.loads(result.stdout.splitlines()[-1])
    f1 = [2 / 3, 1 / 2, 4 / 5]
    assert occurring == pytest.approx(
        {"accuracy": 4 / 6, "precision_macro": 13 / 18, "recall_macro": 2 / 3, "f1_macro": sum(f1) / 3}
    )
    # With num_labels=4, the absent classes 2 and 3 count as zeros in the macro averages.
    assert all_four == pytest.approx(
        {"accuracy": 2 / 3, "precision_macro": 1.5 / 4, "recall_macro": 1.5 / 4, "f1_macro": (2 / 3 + 2 / 3) / 4}
    )


@pytest.fixture(scope="module")
def trainer_metrics():
    """What `Trainer.predict(..., metric_key_prefix="test")` hands the report: the metric module's numbers."""
    metric = report.load_metric()

    def compute(labels: np.ndarray, logits: np.ndarray) -> dict:
        scores = metric.compute(predictions=logits.argmax(axis=1), references=labels, num_labels=len(DIGIT_NAMES))
        return {"test_loss": 0.25, **{f"test_{name}": value for name, value in scores.items()}}

    return compute


def test_per_class_metrics_by_hand():
    per_class = report.per_class_metrics(PREDICTIONS, REFERENCES, ["zero", "one", "two", "three"])
    assert per_class == {
        "zero": pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}),
        "one": pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}),
        "two": pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}),
        "three": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
    }


def logits_for(predictions: np.ndarray, confidences: np.ndarray) -> np.ndarray:
    """Logits over 10 classes whose softmax puts `confidence` on `prediction` and spreads the rest evenly."""
    rest = (1 - confidences) / 9
    probabilities = np.repeat(rest[:, None], 10, axis=1)
    probabilities[np.arange(len(predictions)), predictions] = confidences
    return np.log(probabilities)


@pytest.fixture
def predicted_digits(mnist_test_digits):
    """The 32 test digits with predictions: right except at indices 3, 10 and 20, with known confidences."""
    images, labels = mnist_test_digits
    predictions = labels.astype(np.int64).copy()
    confidences = np.full(len(labels), 0.9)
    for index, confidence in ((3, 0.55), (10, 0.95), (20, 0.7)):
        predictions[index] = (labels[index] + 1) % 10
        confidences[index] = confidence
    return images, labels, logits_for(predictions, confidences)


def test_write_report_files_and_numbers(tmp_path, predicted_digits, trainer_metrics):
    images, labels, logits = predicted_digits
    metrics = trainer_metrics(labels, logits)
    returned = report.write_report(tmp_path, images, labels, logits, DIGIT_NAMES, metrics)
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE), name
    written = json.loads((tmp_path / "test_results.json").read_text())
    assert written == returned
    assert {key: written[key] for key in metrics} == metrics  # the Trainer's numbers, written as they are
    assert written["test_accuracy"] == pytest.approx(29 / 32)
    confusion = np.array(written["test_confusion_matrix"])
    assert confusion.shape == (10, 10)
    assert confusion.sum() == 32
    assert np.trace(confusion) == 29
    assert confusion.sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()
    for index in (3, 10, 20):  # each mistake counted in its (true, predicted) cell
        assert confusion[labels[index], (labels[index] + 1) % 10] >= 1
    per_class = written["test_per_class"]
    assert sum(scores["support"] for scores in per_class.values()) == 32
    # the metric module's macro averages agree with the report's per-class scores
    for key in ("precision", "recall", "f1"):
        assert written[f"test_{key}_macro"] == pytest.approx(np.mean([scores[key] for scores in per_class.values()]))
    text = (tmp_path / "classification_report.txt").read_text()
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:] if line.strip()}
    assert rows["accuracy"] == [f"{29 / 32:.4f}", "32"]
    for name, scores in per_class.items():
        expected = [f"{scores['precision']:.4f}", f"{scores['recall']:.4f}", f"{scores['f1']:.4f}", str(scores["support"])]
        assert rows[name] == expected, name
    assert rows["macro"] == ["avg", *(f"{written[f'test_{key}_macro']:.4f}" for key in ("precision", "recall", "f1")), "32"]


def test_mistakes_are_shown_most_confident_first(predicted_digits):
    images, labels, logits = predicted_digits
    probabilities = softmax(logits, axis=1)
    assert report.most_confident_mistakes(labels, probabilities).tolist() == [10, 20, 3]
    assert report.most_confident_mistakes(labels, probabilities, limit=2).tolist() == [10, 20]
    figure = report.plot_misclassified(images, labels, probabilities, np.array([10, 20, 3]), DIGIT_NAMES)
    (axes,) = figure.axes
    titles = [text.get_text() for text in axes.texts]
    expected = [f"true {labels[i]} / pred {(labels[i] + 1) % 10} ({p:.2f})" for i, p in ((10, 0.95), (20, 0.7), (3, 0.55))]
    assert titles == expected
    shown = [picture.get_array() for picture in axes.images]  # the digits themselves, in the same order
    assert all(np.array_equal(picture, images[i]) for picture, i in zip(shown, (10, 20, 3), strict=True))


def test_no_mistakes_still_draws_a_picture(tmp_path, mnist_test_digits, trainer_metrics):
    images, labels = mnist_test_digits
    logits = logits_for(labels.astype(np.int64), np.full(len(labels), 0.99))
    written = report.write_report(tmp_path, images, labels, logits, DIGIT_NAMES, trainer_metrics(labels, logits))
    assert written["test_accuracy"] == 1.0 and np.trace(written["test_confusion_matrix"]) == len(labels)
    assert (tmp_path / "misclassified.png").read_bytes().startswith(PNG_SIGNATURE)
    figure = report.plot_misclassified(images, labels, softmax(logits, axis=1), np.array([], dtype=np.int64), DIGIT_NAMES)
    assert [text.get_text() for text in figure.texts] == ["no mistakes"]


def test_expected_calibration_error_by_hand(predicted_digits):
    _, labels, logits = predicted_digits
    # 29 right at 0.9 (off by 0.1), three wrong alone in their bins at 0.95, 0.7 and 0.55 (off by all of it)
    expected = (29 * 0.1 + 0.95 + 0.7 + 0.55) / 32
    assert report.expected_calibration_error(softmax(logits, axis=1), labels) == pytest.approx(expected)
    perfect = logits_for(labels.astype(np.int64), np.full(len(labels), 1 - 1e-9))
    assert report.expected_calibration_error(softmax(perfect, axis=1), labels) == pytest.approx(0, abs=1e-6)


def test_report_with_a_temperature_gives_calibration_before_and_after(tmp_path, predicted_digits, trainer_metrics):
    images, labels, logits = predicted_digits
    metrics = trainer_metrics(labels, logits)
    written = report.write_report(tmp_path, images, labels, logits, DIGIT_NAMES, metrics, temperature=2.0)
    assert written["temperature"] == 2.0
    assert written["test_ece"] == pytest.approx(report.expected_calibration_error(softmax(logits, axis=1), labels))
    before = report.expected_calibration_error(softmax(logits * 2.0, axis=1), labels)
    assert written["test_ece_uncalibrated"] == pytest.approx(before) and before != pytest.approx(written["test_ece"])
    assert (tmp_path / "reliability_diagram.png").read_bytes().startswith(PNG_SIGNATURE)
    figure = report.plot_reliability_diagram(
        {"before": softmax(logits * 2.0, axis=1), "after": softmax(logits, axis=1)}, labels
    )
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["perfect calibration", f"before: ECE {before:.2%}", f"after: ECE {written['test_ece']:.2%}"]


def test_report_names_the_split_it_is_on(tmp_path, predicted_digits, trainer_metrics):
    images, labels, logits = predicted_digits
    metrics = trainer_metrics(labels, logits)
    written = report.write_report(tmp_path, images, labels, logits, DIGIT_NAMES, metrics, split="validation")
    assert written["test_split"] == "validation"
    assert (tmp_path / "classification_report.txt").read_text().startswith("Reported on validation: 32 examples")


def test_training_curves_draw_loss_and_validation_accuracy(tmp_path):
    history = [
        {"epoch": 0.5, "loss": 2.0}, {"epoch": 1.0, "loss": 1.2}, {"epoch": 1.0, "eval_loss": 1.1, "eval_accuracy": 0.6},
        {"epoch": 2.0, "loss": 0.7}, {"epoch": 2.0, "eval_loss": 0.8, "eval_accuracy": 0.8}, {"train_runtime": 3.0},
    ]
    report.write_training_curves(tmp_path, history)
    assert (tmp_path / "training_curves.png").read_bytes().startswith(PNG_SIGNATURE)
