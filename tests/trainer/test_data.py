from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from waferscope.protocols.encoding import EncodingSpec, encode_dense
from waferscope.protocols.formats import get_writer
from waferscope.protocols.wafermap import Provenance, WaferMap
from waferscope.trainer.config import AugmentConfig
from waferscope.trainer.data import (
    DataError,
    EpochSampler,
    WaferDataset,
    limit_per_class,
    load_labelled,
    sampling_weights,
    stratified_split,
)
from waferscope.trainer.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def val(data_dir: Path):
    data = load_labelled([data_dir / "wm811k" / "val.npz"])
    return data.subset(limit_per_class(data.keys(), 30, 0))


def test_loads_wm811k_through_protocols(data_dir: Path) -> None:
    data = load_labelled([data_dir / "wm811k" / "val.npz"])
    assert len(data) == 12450 and not data.multi_label
    assert data.class_names[-1] == "none"
    assert data.class_counts()["Near-full"] == 30
    assert data.files[0]["sha256"] and len(data.digest()) == 64


def test_loads_mixedwm38_as_multi_label(data_dir: Path) -> None:
    data = load_labelled([data_dir / "mixedwm38" / "val.npz"])
    assert data.multi_label and data.targets.shape == (5703, 8)
    assert data.grids[0].shape == (52, 52)
    assert sum(data.class_counts().values()) >= 5703


def test_stratified_split_is_seeded_and_proportional(val) -> None:
    keys = val.keys()
    tr, va = stratified_split(keys, 0.25, seed=3)
    tr2, va2 = stratified_split(keys, 0.25, seed=3)
    assert (tr == tr2).all() and (va == va2).all()
    assert not set(tr) & set(va) and len(tr) + len(va) == len(keys)
    for k in np.unique(keys):
        n = (keys == k).sum()
        assert abs((keys[va] == k).sum() - round(n * 0.25)) <= 1
    _, va3 = stratified_split(keys, 0.25, seed=4)
    assert set(va3) != set(va)


def test_balanced_sampling(val) -> None:
    keys = val.keys()
    natural = sampling_weights(keys, 0.0)
    balanced = sampling_weights(keys, 1.0)
    per_class = [balanced[keys == k].sum() for k in np.unique(keys)]
    np.testing.assert_allclose(per_class, 1 / len(per_class))
    assert np.allclose(natural, 1 / len(keys))
    sampler = EpochSampler(balanced, 200, seed=1)
    sampler.set_epoch(2)
    a = list(sampler)
    assert a == list(sampler) and len(a) == 200
    sampler.set_epoch(3)
    assert list(sampler) != a
    halves = [EpochSampler(balanced, 200, 1, rank=r, world_size=2) for r in (0, 1)]
    for h in halves:
        h.set_epoch(2)
    assert sorted(list(halves[0]) + list(halves[1])) == sorted(a)


def test_dataset_encodes_with_protocols(val) -> None:
    tax = load_taxonomy()
    prior = tax.matrix(val.class_names)
    spec = EncodingSpec(size=64)
    plain = WaferDataset(val, prior[val.targets], spec, None, seed=0)
    x, y, c = plain[5]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), encode_dense(val.grids[5], spec))
    assert int(y) == int(val.targets[5])
    torch.testing.assert_close(c, torch.from_numpy(prior[val.targets[5]]))
    aug = WaferDataset(val, prior[val.targets], spec, AugmentConfig(), seed=0)
    aug.set_epoch(1)
    first = aug[5][0]
    torch.testing.assert_close(aug[5][0], first)  # deterministic per (seed, epoch, index)
    aug.set_epoch(2)
    assert not torch.equal(aug[5][0], first) or not torch.equal(aug[6][0], aug[6][0] * 0)


def test_labelled_wafer_files_load_like_the_arrays(tmp_path: Path, val) -> None:
    """Any labelled WaferMap source (here CSV written by protocols) gives the same grids."""
    writer = get_writer("csv")
    paths, expected = [], []
    for cls in (0, 3, 8):
        idx = [int(i) for i in np.flatnonzero(val.targets == cls)[:3]]
        wafers = [
            WaferMap.from_dense(
                val.grids[i],
                provenance=Provenance(source="test", format="wm811k", wafer_index=k),
                labels=(val.class_names[cls],),
            )
            for k, i in enumerate(idx)
        ]
        buf = io.BytesIO()
        writer.write(wafers, buf)
        path = tmp_path / f"class{cls}.csv"
        path.write_bytes(buf.getvalue())
        paths.append(path)
        expected += [(val.grids[i], cls) for i in idx]
    loaded = load_labelled(paths, class_names=val.class_names, multi_label=False)
    assert len(loaded) == len(expected)
    assert list(loaded.targets) == [c for _, c in expected]
    for got, (want, _) in zip(loaded.grids, expected, strict=True):
        assert (got == 2).sum() == (want == 2).sum()
        assert (got != 0).sum() == (want != 0).sum()


def test_class_lists_must_agree(data_dir: Path) -> None:
    with pytest.raises(DataError, match="differ"):
        load_labelled([data_dir / "wm811k" / "val.npz", data_dir / "mixedwm38" / "val.npz"])
    with pytest.raises(DataError, match="no such file"):
        load_labelled([data_dir / "nope.npz"])
