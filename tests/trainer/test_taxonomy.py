from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from waferscope.trainer.taxonomy import TaxonomyError, load_taxonomy, parse_taxonomy

WM811K = (
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
MIXED = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Near-full", "Scratch", "Random")


def test_builtin_taxonomy_covers_every_pattern() -> None:
    tax = load_taxonomy()
    m = tax.matrix(WM811K)
    assert m.shape == (9, len(tax.causes))
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    assert tax.ref == "wm811k-root-causes@1"
    expected = {"cmp", "deposition", "edge_process", "handling_scratch", "particles", "probe_test"}
    assert expected <= set(tax.cause_ids)
    assert tax.sources and "prior" in tax.text.lower()
    # The normal wafer points to no process cause.
    assert tax.cause_ids[int(tax.normal_row().argmax())] == "no_process_cause"


def test_multi_label_prior_is_the_mean_of_rows() -> None:
    tax = load_taxonomy()
    hot = np.zeros((3, 8), np.uint8)
    hot[1, [0, 6]] = 1  # Center + Scratch
    hot[2, 7] = 1
    t = tax.multi_label_targets(hot, MIXED)
    m = tax.matrix(MIXED)
    np.testing.assert_allclose(t[0], tax.normal_row())
    np.testing.assert_allclose(t[1], (m[0] + m[6]) / 2, atol=1e-6)
    np.testing.assert_allclose(t[2], m[7])


def test_unknown_pattern_and_bad_files(tmp_path: Path) -> None:
    tax = load_taxonomy()
    with pytest.raises(TaxonomyError, match="Spiral"):
        tax.matrix(["Spiral"])
    with pytest.raises(TaxonomyError, match="unknown cause"):
        parse_taxonomy('name="t"\nversion="1"\ncauses=[{id="a"}]\n[prior.x]\nb=1\n')
    with pytest.raises(TaxonomyError, match="missing"):
        parse_taxonomy('name="t"\n')
    custom = tmp_path / "t.toml"
    custom.write_text('name="t"\nversion="2"\ncauses=[{id="a"},{id="b"}]\n[prior.x]\na=3\nb=1\n')
    t = load_taxonomy(custom)
    np.testing.assert_allclose(t.matrix(["x"]), [[0.75, 0.25]])
