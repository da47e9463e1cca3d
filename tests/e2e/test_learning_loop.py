"""The learning loop end to end: reviewer labels in a real hub -> training job -> train-worker ->
a signed candidate release registered, and a failing job reported with nothing registered.

Real parts: the hub (SQLite file, served by uvicorn), its review and training-job APIs over HTTP,
the trainer (a tiny base run on real WM-811K maps, then a one-epoch fine-tune from it), the
bundler, the release signer and the hub's own release registry (``POST /api/v1/releases``, which
verifies every upload against the root key the hub trusts).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hub_data import make_result, real_grids
from hub_support import free_port, wait_for
from hub_testing import PASSWORD, add_role_users, feed, hub_config
from release_keys import make_signer
from tiny_trainer_model import TINY_MODEL

from waferscope.hub.app import Hub
from waferscope.protocols.release import delegate, verify_release
from waferscope.protocols.release import envelope as release_envelope

# About a minute on an idle 2-core machine; several times that on a loaded one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def served_hub(tmp_path: Path) -> Iterator[tuple[str, Hub]]:
    import uvicorn

    signer = make_signer(tmp_path / "keys")
    hub = Hub(
        hub_config(
            tmp_path / "hub",
            training={"label_trigger": 12},
            releases={"trusted_root_keys": [str(signer.root_pub)]},
        )
    )
    add_role_users(hub)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hub.web_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn")
    yield f"http://127.0.0.1:{port}", hub
    server.should_exit = True
    thread.join(10)
    hub.stop()


def _http(url: str, doc: dict[str, Any] | None = None, token: str = "") -> Any:
    req = urllib.request.Request(
        url,
        data=None if doc is None else json.dumps(doc).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="GET" if doc is None else "POST",
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read())


def _base_run(root: Path, data_dir: Path) -> tuple[Path, Path]:
    """A tiny base run (the 'current engine'): its config file and its best.pt."""
    from waferscope.trainer.config import TrainConfig
    from waferscope.trainer.train import train

    doc: dict[str, Any] = {
        "name": "base",
        "seed": 3,
        "data": {
            "train": [str(data_dir / "wm811k" / "train.npz")],
            "val": [str(data_dir / "wm811k" / "val.npz")],
            "limit_per_class": 8,
            "val_limit_per_class": 4,
            "batch_size": 16,
            "eval_batch_size": 64,
            "num_workers": 0,
            "epoch_samples": 32,
        },
        "model": dict(TINY_MODEL),
        "optim": {"epochs": 1, "warmup_epochs": 0.5},
        "run": {"output_dir": str(root / "runs"), "threads": 1, "precision": "fp32"},
        "tracking": {"enabled": False},
        "export": {"calibration_samples": 16},
    }
    cfg = TrainConfig.from_dict(doc)
    result = train(cfg, resume=False, show_progress=False)
    path = root / "base.json"
    path.write_text(json.dumps(doc))
    return path, result.run_dir / "best.pt"


def test_reviewer_labels_become_a_registered_candidate(  # type: ignore[no-untyped-def]
    served_hub, tmp_path: Path, data_dir: Path
) -> None:
    from waferscope.trainer.retrain import WorkerSettings, client_for, work_once

    url, hub = served_hub
    grids = real_grids(data_dir, 14)
    msgs = [make_result(g, lab, i, confidence=0.3) for i, (g, lab) in enumerate(grids)]
    feed(hub, msgs)
    reviewer = _http(f"{url}/api/v1/auth/token", {"username": "reviewer1", "password": PASSWORD})
    for i, (m, (_, lab)) in enumerate(zip(msgs, grids, strict=True)):
        # the engine's cause ids train the cause head; another name is kept but not learned
        cause = "probe_test" if i % 2 else "probe-card"
        _http(
            f"{url}/api/v1/results/{m.result_id}/review",
            {"pattern": lab, "root_cause": cause},
            reviewer["access_token"],
        )
    eng = _http(f"{url}/api/v1/auth/token", {"username": "engineer1", "password": PASSWORD})
    jobs = _http(f"{url}/api/v1/training-jobs", token=eng["access_token"])["jobs"]
    assert [(j["reason"], j["state"]) for j in jobs] == [("labels", "queued")]

    base_config, checkpoint = _base_run(tmp_path / "base", data_dir)
    signer = make_signer(tmp_path / "keys")
    delegation = tmp_path / "keys" / "release.delegation.json"
    delegation.write_bytes(
        release_envelope.to_bytes(
            delegate(
                signer.root,
                signer.release.public_key(),
                expires=datetime.now(UTC) + timedelta(days=30),
            )
        )
    )
    settings = WorkerSettings(
        hub_url=url,
        username="engineer1",
        password=PASSWORD,
        worker="worker-a",
        base_config=base_config,
        checkpoint=checkpoint,
        release_key=tmp_path / "keys" / "release.key",
        delegation=delegation,
        workdir=tmp_path / "jobs",
        epochs=1,
        overrides={"run.threads": 1},
    )
    client = client_for(settings)
    outcome = work_once(settings, client)
    assert outcome is not None and outcome["state"] == "succeeded", outcome
    registered = _http(f"{url}/api/v1/releases", token=eng["access_token"])["releases"]
    assert [r["release_id"] for r in registered] == [outcome["release_id"]]
    release = registered[0]
    assert release["channel"] == "candidate" and release["model_version"].startswith("job-1-")
    # the registered file, fetched back from the hub and verified against the root
    fetched = urllib.request.Request(
        f"{url}/api/v1/releases/{release['release_id']}/file",
        headers={"Authorization": f"Bearer {eng['access_token']}"},
    )
    with urllib.request.urlopen(fetched, timeout=60) as answer:
        (tmp_path / "candidate.wsrelease").write_bytes(answer.read())
    verify_release(
        tmp_path / "candidate.wsrelease", signer.roots, extract_to=tmp_path / "candidate"
    )
    card = (tmp_path / "candidate" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "## Retraining job 1" in card
    # 14 labels: every 5th held for the gate (2), 12 fine-tune; about half name probe_test
    trained = re.search(r"Root-cause head: trained: (\d+) reviewer root-cause labels", card)
    assert trained is not None and 5 <= int(trained.group(1)) <= 7, card[-600:]
    job = _http(f"{url}/api/v1/training-jobs/1", token=eng["access_token"])
    assert job["progress"] == 1.0 and "int8_macro_f1" in job["metrics"]
    assert "fine-tuning 1 epochs" in job["log"] and "registered release" in job["log"]

    # A job that fails (its checkpoint is gone) is reported failed; nothing is registered.
    _http(f"{url}/api/v1/training-jobs", {"detail": "by hand"}, eng["access_token"])
    broken = settings.model_copy(update={"checkpoint": tmp_path / "missing.pt"})
    failed = work_once(broken, client_for(broken))
    assert failed is not None and failed["state"] == "failed"
    assert "missing.pt" in failed["error"] and failed["release_id"] is None
    again = _http(f"{url}/api/v1/releases", token=eng["access_token"])["releases"]
    assert len(again) == 1
    assert work_once(settings, client) is None  # nothing queued
