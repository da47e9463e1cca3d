"""Training jobs: the label and drift triggers, the worker's claim / progress / finish, the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_data import make_result, real_grids
from hub_testing import add_role_users, bearer, feed, hub_config
from litestar.testing import TestClient

from waferscope.hub.app import Hub
from waferscope.hub.config import TrainingConfig
from waferscope.hub.store import training
from waferscope.protocols import messages
from waferscope.protocols.pb import alert_pb2, common_pb2

JOBS = "/api/v1/training-jobs"


@pytest.fixture
def trained_hub(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    h = Hub(hub_config(tmp_path, db_url, training={"label_trigger": 3}))
    add_role_users(h)
    yield h
    h.stop()


def _review_all(hub, client, data_dir: Path, count: int, start: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    grids = real_grids(data_dir, count, start=start)
    msgs = [make_result(g, lab, start + i, confidence=0.3) for i, (g, lab) in enumerate(grids)]
    feed(hub, msgs)
    h = bearer(hub, "reviewer")
    for m, (_, lab) in zip(msgs, grids, strict=True):
        res = client.post(
            f"/api/v1/results/{m.result_id}/review",
            headers=h,
            json={"pattern": lab, "root_cause": "probe-card"},
        )
        assert res.status_code == 201, res.text
    return [m.result_id for m in msgs]


def test_labels_trigger_a_job_that_a_worker_runs_to_success(trained_hub, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    hub = trained_hub
    eng = bearer(hub, "engineer")
    with TestClient(hub.web_app()) as client:
        _review_all(hub, client, data_dir, 2)
        assert client.get(JOBS, headers=eng).json()["jobs"] == []
        assert client.post(f"{JOBS}/claim", headers=eng, json={"worker": "w1"}).status_code == 204
        _review_all(hub, client, data_dir, 1, start=2)  # the third label: the trigger fires
        jobs = client.get(JOBS, headers=eng).json()["jobs"]
        assert [(j["reason"], j["state"], j["labels_total"]) for j in jobs] == [
            ("labels", "queued", 3)
        ]
        # a reviewer may not run jobs; a worker (engineer account) claims it
        refused = client.post(
            f"{JOBS}/claim", headers=bearer(hub, "reviewer"), json={"worker": "x"}
        )
        assert refused.status_code == 403
        job = client.post(f"{JOBS}/claim", headers=eng, json={"worker": "w1"}).json()
        assert job["state"] == "running" and job["worker"] == "w1"
        jid = job["job_id"]
        assert client.post(f"{JOBS}/claim", headers=eng, json={"worker": "w2"}).status_code == 204
        step = {
            "worker": "w1",
            "progress": 0.4,
            "stage": "fine-tune",
            "lines": ["epoch 1 loss 0.9"],
        }
        assert client.post(f"{JOBS}/{jid}/progress", headers=eng, json=step).status_code == 200
        other = client.post(f"{JOBS}/{jid}/progress", headers=eng, json={**step, "worker": "w2"})
        assert other.status_code == 409 and "w1" in other.text
        bad = client.post(f"{JOBS}/{jid}/progress", headers=eng, json={**step, "progress": 3})
        assert bad.status_code == 409
        no_release = client.post(
            f"{JOBS}/{jid}/finish", headers=eng, json={"worker": "w1", "ok": True}
        )
        assert no_release.status_code == 409 and "release id" in no_release.text
        done = client.post(
            f"{JOBS}/{jid}/finish",
            headers=eng,
            json={
                "worker": "w1",
                "ok": True,
                "release_id": "rel-1",
                "version": "2026.12.1",
                "metrics": {"macro_f1": 0.8},
                "lines": ["registered rel-1"],
            },
        )
        assert done.status_code == 200 and done.json()["state"] == "succeeded"
        got = client.get(f"{JOBS}/{jid}", headers=bearer(hub, "operator")).json()
        assert got["release_id"] == "rel-1" and got["progress"] == 1.0
        assert got["log"] == "epoch 1 loss 0.9\nregistered rel-1\n"
        again = client.post(
            f"{JOBS}/{jid}/finish", headers=eng, json={"worker": "w1", "ok": False, "error": "x"}
        )
        assert again.status_code == 409
        assert client.get(f"{JOBS}/999", headers=eng).status_code == 404
        page = client.get("/ui/training", headers=bearer(hub, "operator"))
        assert page.status_code == 200 and "rel-1" in page.text and "epoch 1 loss" in page.text


def test_a_failed_job_keeps_its_reason_and_no_release(trained_hub) -> None:  # type: ignore[no-untyped-def]
    hub = trained_hub
    eng = bearer(hub, "engineer")
    with TestClient(hub.web_app()) as client:
        made = client.post(JOBS, headers=eng, json={"detail": "by hand"}).json()
        assert made["reason"] == "manual" and made["state"] == "queued"
        assert client.post(JOBS, headers=eng, json={}).json()["job_id"] == made["job_id"]
        jid = client.post(f"{JOBS}/claim", headers=eng, json={"worker": "w1"}).json()["job_id"]
        no_reason = client.post(
            f"{JOBS}/{jid}/finish", headers=eng, json={"worker": "w1", "ok": False}
        )
        assert no_reason.status_code == 409
        failed = client.post(
            f"{JOBS}/{jid}/finish",
            headers=eng,
            json={"worker": "w1", "ok": False, "error": "gate macro-F1 0.41 < 0.60"},
        ).json()
        assert failed["state"] == "failed" and failed["release_id"] is None
        assert failed["error"] == "gate macro-F1 0.41 < 0.60"


def test_a_drift_alert_queues_one_job(trained_hub) -> None:  # type: ignore[no-untyped-def]
    hub = trained_hub
    alert = alert_pb2.Alert(
        alert_id=messages.new_message_id(),
        device_id="edge-01",
        sequence=1,
        source=alert_pb2.ALERT_SOURCE_EDGE,
        rule_id="embedding-drift",
        rule_kind="drift",
        severity=common_pb2.SEVERITY_WARNING,
        title="embedding drift 0.31",
    )
    alert.raised_time.GetCurrentTime()
    feed(hub, [alert])
    with hub.db.session(write=True) as s:
        job = training.maybe_trigger(s, hub.config.training)
        assert job is not None and job.reason == "drift" and alert.alert_id in job.detail
        assert training.maybe_trigger(s, hub.config.training) is None  # one open job at a time
        with pytest.raises(training.TrainingJobError, match="reason"):
            training.request_training(s, "whim")
    with hub.db.session(write=True) as s:
        claimed = training.claim(s, "w1")
        assert claimed is not None
        training.finish(s, claimed.id, "w1", ok=False, error="stopped", log_limit=1000)
    with hub.db.session(write=True) as s:  # the alert is older than the last job: no new job
        assert training.maybe_trigger(s, TrainingConfig(label_trigger=0)) is None
