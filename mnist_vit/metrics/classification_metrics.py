"""Accuracy and macro-averaged precision, recall and F1 for single-label classification, in numpy.

A local `evaluate` module: `evaluate.load("<path>/classification_metrics.py")` works offline, where
`evaluate.load("accuracy")` would download from the Hub. `evaluate` copies this file alone and
scans its imports, so it imports nothing from the project, one import per line.
The macro averages follow scikit-learn: over the classes that occur in the predictions or the
references (or over all `num_labels` classes when given), a score with a zero denominator is 0.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy and macro-averaged precision, recall and F1 of class predictions."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    num_labels (int, optional): the number of classes; macro averages then cover every class,
        even one that never occurs. Default: the classes that occur.
Returns:
    accuracy, precision_macro, recall_macro, f1_macro: floats in [0, 1].
Example:
    >>> metric = evaluate.load("mnist_vit/metrics/classification_metrics.py")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]
    0.6666666666666666
"""


def confusion_matrix(predictions, references, num_labels: int) -> np.ndarray:
    """Counts (num_labels, num_labels): row = true class, column = predicted class."""
    predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
    flat = np.bincount(references * num_labels + predictions, minlength=num_labels * num_labels)
    return flat.reshape(num_labels, num_labels)


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of every class of a confusion matrix (0 where undefined)."""
    hits = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


class ClassificationMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        size = num_labels or int(max(predictions.max(), references.max())) + 1
        scores = per_class_scores(confusion_matrix(predictions, references, size))
        occurring = np.arange(size) if num_labels else np.union1d(predictions, references)
        return {
            "accuracy": float(np.mean(predictions == references)),
            "precision_macro": float(scores["precision"][occurring].mean()),
            "recall_macro": float(scores["recall"][occurring].mean()),
            "f1_macro": float(scores["f1"][occurring].mean()),
        }
