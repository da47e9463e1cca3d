from __future__ import annotations

import numpy as np
import pytest

from waferscope.trainer.metrics import (
    classification_metrics,
    confusion_png,
    expected_calibration_error,
    multilabel_metrics,
)

NAMES = ("A", "B", "none")


def test_single_label_metrics() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 2, 0])
    probs = np.eye(3)[pred] * 0.9 + 0.1 / 3
    m = classification_metrics(y, probs, NAMES)
    assert m.accuracy == pytest.approx(6 / 8)
    a, b, n = m.per_class
    assert (a.precision, a.recall) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (b.precision, b.recall) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert (n.precision, n.recall, n.support) == (pytest.approx(1.0), pytest.approx(0.75), 4)
    assert m.macro_f1 == pytest.approx(np.mean([a.f1, b.f1, n.f1]))
    assert m.macro_f1_defects == pytest.approx(np.mean([a.f1, b.f1]))
    assert m.confusion is not None and m.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 3]]
    table = m.table()
    assert "| B | 0.6667 | 1.0000 |" in table and "truth \\ predicted" in table
    assert m.scalars("val_")["val_f1_none"] == pytest.approx(n.f1)


def test_ece() -> None:
    conf = np.array([0.9] * 10)
    correct = np.array([True] * 9 + [False])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([False, False])) == 1.0


def test_multilabel_metrics() -> None:
    truth = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.1], [0.3, 0.7]])
    m = multilabel_metrics(truth, probs, ("A", "B"))
    assert m.accuracy == pytest.approx(3 / 4)  # exact match
    assert m.per_class[0].f1 == pytest.approx(1.0)
    assert m.per_class[1].recall == pytest.approx(0.5)
    assert m.extra["label_accuracy"] == pytest.approx(7 / 8)


def test_confusion_png() -> None:
    png = confusion_png(np.array([[5, 1], [0, 7]]), ("A", "B"), title="t")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
