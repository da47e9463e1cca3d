from __future__ import annotations

import json
from pathlib import Path

import pytest

from waferscope.trainer.config import ConfigError, TrainConfig, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "trainer" / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.train
    assert cfg.model.backbone


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        REPO / "trainer/configs/wm811k-default.toml",
        ["optim.epochs=3", "data.batch_size=8", 'model.backbone="efficientnet_b0"', "name=x1"],
    )
    assert (cfg.optim.epochs, cfg.data.batch_size, cfg.model.backbone, cfg.name) == (
        3,
        8,
        "efficientnet_b0",
        "x1",
    )
    cfg.dump(tmp_path / "c.json")
    again = load_config(tmp_path / "c.json")
    assert again == cfg
    assert json.loads((tmp_path / "c.json").read_text())["optim"]["epochs"] == 3


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"data": {"train": ["a.npz"]}, "optim": {"epochz": 1}}, "optim.epochz"),
        ({"data": {"train": []}}, "data.train"),
        ({"data": {"train": ["a"]}, "model": {"output_stride": 4}}, "output_stride"),
        ({"data": {"train": ["a"]}, "augment": {"per_class": {"Loc": {"flip": 2}}}}, "Loc"),
    ],
)
def test_invalid_configs_name_the_key(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        TrainConfig.from_dict(doc)


def test_bad_file_and_override(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(REPO / "trainer/configs/wm811k-default.toml", ["novalue"])
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_per_class_policy_overrides_default() -> None:
    cfg = load_config(REPO / "trainer/configs/wm811k-default.toml")
    assert cfg.augment.policy_for("Scratch").cluster_erode is False
    assert cfg.augment.policy_for("Scratch").flip == cfg.augment.default.flip
    assert cfg.augment.policy_for("Center") == cfg.augment.default
