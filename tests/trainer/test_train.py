"""A tiny real training run: checkpoints, resume, determinism, MLflow, early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from waferscope.trainer.train import lr_factor, train

from .conftest import tiny_config

pytestmark = pytest.mark.slow


def test_run_writes_checkpoints_history_and_mlflow(trained_run: Path) -> None:
    run_dir = trained_run.parent
    for name in ("best.pt", "last.pt", "config.json", "history.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss", "val_macro_f1", "val_ece", "val_f1_none", "train_seconds"} <= set(rows[0])
    mlruns = run_dir.parent.parent / "mlruns"
    assert any(mlruns.rglob("val_macro_f1"))  # metrics reached the file store
    ckpt = torch.load(run_dir / "last.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 2 and ckpt["class_names"][-1] == "none"
    assert ckpt["encoding"]["size"] == 64 and len(ckpt["data_digest"]) == 64


def test_resume_continues_where_it_stopped(tmp_path: Path, data_dir: Path) -> None:
    # The first call is cut short after one epoch (as if the session had ended there).
    one = tiny_config(tmp_path / "a", data_dir, run={"max_minutes": 1e-9})
    assert train(one, resume=False, show_progress=False).epochs_run == 1
    two = tiny_config(tmp_path / "a", data_dir)
    resumed = train(two, resume=True, show_progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    straight = train(tiny_config(tmp_path / "b", data_dir), resume=False, show_progress=False)
    a = torch.load(resumed.run_dir / "last.pt", weights_only=False)["model"]
    b = torch.load(straight.run_dir / "last.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)  # resume == uninterrupted run


def test_early_stopping_and_worker_loading(tmp_path: Path, data_dir: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        data_dir,
        optim={"epochs": 5, "lr": 1e-9},
        run={"early_stopping_patience": 1},
        data={"num_workers": 1, "epoch_samples": 16},
        tracking={"enabled": False},
    )
    result = train(cfg, resume=False, show_progress=False)
    assert result.stopped_early and result.epochs_run < 5


def test_split_from_train_when_no_val(tmp_path: Path, data_dir: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        data_dir,
        data={"val": [], "val_fraction": 0.25, "val_limit_per_class": None},
        optim={"epochs": 1},
        tracking={"enabled": False},
    )
    result = train(cfg, resume=False, show_progress=False)
    assert result.history[0]["val_macro_f1"] >= 0.0


def test_lr_schedule() -> None:
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_multi_label_training_on_mixedwm38(tmp_path: Path, data_dir: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        data_dir,
        data={
            "train": [str(data_dir / "mixedwm38" / "train.npz")],
            "val": [str(data_dir / "mixedwm38" / "val.npz")],
            "limit_per_class": 3,
            "val_limit_per_class": 2,
        },
        model={"multi_label": True},
        run={"select_metric": "exact_match"},
        optim={"epochs": 1},
        tracking={"enabled": False},
    )
    result = train(cfg, resume=False, show_progress=False)
    row = result.history[0]
    assert "val_exact_match" in row and "val_label_accuracy" in row
    ckpt = torch.load(result.run_dir / "best.pt", weights_only=False)
    assert ckpt["multi_label"] and len(ckpt["class_names"]) == 8


def test_fine_tune_checkpoint_must_exist_and_match(
    tmp_path: Path, data_dir: Path, trained_run: Path
) -> None:
    from waferscope.protocols.errors import WaferscopeError

    missing = tiny_config(tmp_path, data_dir, model={"init_checkpoint": str(tmp_path / "no.pt")})
    with pytest.raises(WaferscopeError, match=r"no\.pt: no such file"):
        train(missing, resume=False, show_progress=False)
    wider = tiny_config(
        tmp_path,
        data_dir,
        name="wider",
        model={"init_checkpoint": str(trained_run), "hidden": [32]},
    )
    with pytest.raises(WaferscopeError, match="weights do not fit"):
        train(wider, resume=False, show_progress=False)
