"""Reviewer root causes in training data: the archive's ``cause`` key survives loading,
concatenation and subsets, and turns the cause targets of those maps from the prior into one-hot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from waferscope.protocols.encoding import EncodingSpec
from waferscope.trainer.data import load_labelled, write_archive
from waferscope.trainer.taxonomy import load_taxonomy
from waferscope.trainer.train import Prepared

CLASSES = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)


def _maps(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 3, (6, 7), dtype=np.uint8) for _ in range(n)]


def test_reviewer_causes_replace_the_prior_where_given(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(None)
    cause = taxonomy.cause_ids[0]
    plain, reviewed = tmp_path / "plain.npz", tmp_path / "reviewed.npz"
    write_archive(plain, _maps(3), np.array([0, 3, 8]), CLASSES)
    write_archive(reviewed, _maps(3), np.array([3, 3, 7]), CLASSES, causes=[cause, "", "unknown"])
    data = load_labelled([plain, reviewed])
    assert data.causes == ["", "", "", cause, "", "unknown"]
    assert load_labelled([plain]).causes is None
    sub = data.subset(np.array([3, 1]))
    assert sub.causes == [cause, ""]
    prior = taxonomy.matrix(CLASSES)
    prep = Prepared(data, data, taxonomy, prior, EncodingSpec(size=16))
    targets = prep.cause_targets(data)
    one_hot = np.zeros(len(taxonomy.cause_ids), np.float32)
    one_hot[0] = 1.0
    np.testing.assert_array_equal(targets[3], one_hot)  # the reviewer's cause
    np.testing.assert_allclose(targets[4], prior[3])  # no cause: the prior of its pattern
    np.testing.assert_allclose(targets[5], prior[7])  # a cause the taxonomy lacks: the prior
    np.testing.assert_allclose(targets[:3], prior[[0, 3, 8]])
    assert not np.shares_memory(targets, prior)
