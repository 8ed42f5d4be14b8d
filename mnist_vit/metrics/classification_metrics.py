"""The Trainer's metric: accuracy and macro-averaged precision, recall and F1 of class predictions (scikit-learn).

A local `evaluate` module: `evaluate.load("<path>/classification_metrics.py")` works offline, where
`evaluate.load("accuracy")` would download from the Hub. `evaluate` copies this file alone and
scans its imports, so it imports nothing from the project, one import per line.
The macro averages are scikit-learn's: over the classes that occur in the predictions or the
references (or over all `num_labels` classes when given), a score with a zero denominator is 0.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score
from sklearn.metrics import precision_recall_fscore_support

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


class ClassificationMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None):
        labels = list(range(num_labels)) if num_labels else None
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, labels=labels, average="macro", zero_division=0
        )
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "precision_macro": float(precision),
            "recall_macro": float(recall),
            "f1_macro": float(f1),
        }
