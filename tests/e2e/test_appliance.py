"""The appliance end to end: real tester files dropped into an edge's hot folder travel through
the real edge agent (shipped INT8 engine), a real Mosquitto and the real hub into the hub's
database, API and UI; a reviewer's correction comes out as a training label; a network
partition between the edges and the broker loses nothing and duplicates nothing."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMEDRIVER, CHROMIUM, chromium, images_loaded, ready
from e2e_support import DEFECT_PATTERNS, Api, hub_rows, wait_for

from waferscope.appliance.processes import waferscope_command
from waferscope.protocols.formats import read_maps
from waferscope.protocols.simulator import Output
from waferscope.protocols.simulator import TesterSimulator as Simulator

pytestmark = pytest.mark.slow

EDGE_RULES = {
    "rules": [
        {"id": "parse-failure", "kind": "parse_failure", "severity": "warning"},
        {
            "id": "defect-pattern",
            "kind": "pattern",
            "patterns": DEFECT_PATTERNS,
            "min_confidence": 0.0,
            "severity": "warning",
        },
    ]
}


def simulate(folder: Path, source: Path, count: int, manifest: Path, **kw: object) -> list[dict]:
    Simulator(
        [str(source)],
        [Output(folder, "mixed", kw.pop("tester_id", "T-01"))],  # type: ignore[arg-type]
        rate=None,
        count=count,
        shuffle=True,
        manifest=manifest,
        **kw,  # type: ignore[arg-type]
    ).run()
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_wafer_files_reach_the_hub_database_api_and_ui(
    start_appliance, val_npz: Path, tester_dir: Path, tmp_path: Path, artifacts_dir: Path
) -> None:
    app = start_appliance(
        edges=1,
        edge_extra={"review": {"threshold": 0.97}, "alerts": EDGE_RULES},
        hub_extra={"review": {"sample_rate": 0.0}},
    )
    edge = app.edges[0].layout
    written = simulate(
        edge.hot_folder,
        val_npz,
        16,
        tmp_path / "manifest.jsonl",
        patterns=["Scratch", "Loc", "Edge-Loc", "Center"],
        seed=7,
    )
    # a tester file cut short: refused at the edge, with a parse-failure alert for the hub
    cut = (tester_dir / "stdf" / "a595.stdf.gz").read_bytes()[:1500]
    (edge.hot_folder / "cut-short.stdf.part").write_bytes(cut)
    (edge.hot_folder / "cut-short.stdf.part").rename(edge.hot_folder / "cut-short.stdf")

    wait_for(lambda: hub_rows(app, "SELECT COUNT(*) FROM results")[0][0] >= 16, 90, "16 results")
    wait_for(
        lambda: hub_rows(app, "SELECT 1 FROM alerts WHERE rule_id = 'parse-failure'"),
        30,
        "the parse-failure alert at the hub",
    )
    assert (edge.rejected_dir / "cut-short.stdf.reason.txt").is_file()

    # the database: every wafer once, in the edge's order, with its heatmap
    rows = hub_rows(
        app,
        "SELECT result_id, device_id, sequence, lot_id, wafer_id, tester_id, pattern, confidence,"
        " review_required FROM results ORDER BY rowid",
    )
    assert len(rows) == 16
    assert [r[2] for r in rows] == list(range(1, 17))
    assert {(r[3], r[4]) for r in rows} == {(w["lot"], w["wafer"]) for w in written}
    assert {r[1] for r in rows} == {edge.device_id} and {r[5] for r in rows} == {"T-01"}
    heatmaps = hub_rows(app, "SELECT COUNT(*) FROM heatmaps h JOIN results r USING (result_id)")
    assert heatmaps[0][0] == 16

    # review routing: what the edge flagged (confidence below 0.97) is queued, nothing else
    flagged = {r[0] for r in rows if r[8]}
    confident = {r[0] for r in rows if not r[8]}
    assert flagged, "expected some of these hard patterns below 0.97 confidence"
    assert all(r[7] < 0.97 for r in rows if r[8])
    queued = {r[0]: r[1] for r in hub_rows(app, "SELECT result_id, reason FROM review_queue")}
    assert flagged <= set(queued) and not confident & set(queued)

    # defect alerts raised at the edge arrive with the wafer they are about
    defects = [r for r in rows if r[6] != "none"]
    alerts = hub_rows(app, "SELECT lot_id, wafer_id FROM alerts WHERE rule_id = 'defect-pattern'")
    assert {(r[3], r[4]) for r in defects} == set(alerts)

    # the API
    user, password = app.reviewer_login
    api = Api(app.hub_url, user, password)
    target = min(flagged, key=lambda rid: next(r[7] for r in rows if r[0] == rid))
    detail = api.get(f"/api/v1/results/{target}")
    assert detail["result_id"] == target and detail["review_required"]
    assert detail["heatmap"]["method"] == "gradcam" and detail["heatmap"]["rows"] > 0
    assert detail["queue"]["state"] == "open"
    assert target in {i["result_id"] for i in api.get("/api/v1/queue?limit=500")["items"]}
    rules = [a["rule_id"] for a in api.get("/api/v1/alerts")["alerts"]]
    assert "parse-failure" in rules

    # the UI in a real browser
    if CHROMIUM and CHROMEDRIVER:
        from selenium.webdriver.common.by import By

        with chromium() as d:
            d.get(app.hub_url + "/ui/queue")
            wait_for(lambda: "/login" in d.current_url, 10, "login redirect")
            d.find_element(By.ID, "username").send_keys(user)
            d.find_element(By.ID, "password").send_keys(password)
            d.find_element(By.ID, "login-button").click()
            wait_for(lambda: d.current_url.endswith("/ui/queue") and ready(d), 15, "the queue")
            ids = [
                r.get_attribute("data-result-id")
                for r in d.find_elements(By.CSS_SELECTOR, "#queue-table tr.row")
            ]
            assert set(ids) == flagged
            d.save_screenshot(str(artifacts_dir / "e2e-1-queue.png"))
            d.get(f"{app.hub_url}/ui/wafers/{target}")
            wait_for(lambda: ready(d) and images_loaded(d), 20, "map and Grad-CAM overlay")
            assert len(d.find_elements(By.CSS_SELECTOR, "#probabilities tr")) == 9
            d.save_screenshot(str(artifacts_dir / "e2e-2-wafer.png"))
            d.get(app.hub_url + "/ui/alerts")
            wait_for(lambda: ready(d), 10, "alerts page")
            assert "cut-short.stdf" in d.find_element(By.ID, "alerts-table").text
            d.save_screenshot(str(artifacts_dir / "e2e-3-alerts.png"))

    # a reviewer's correction becomes a training label
    predicted = next(r[6] for r in rows if r[0] == target)
    corrected = "Scratch" if predicted != "Scratch" else "Loc"
    answer = api.post(f"/api/v1/results/{target}/review", {"pattern": corrected})
    assert answer["changed"]
    out = tmp_path / "labels.npz"
    done = subprocess.run(
        waferscope_command(
            "hub", "export-labels", "-o", str(out), "--config", str(app.layout.hub_config_file)
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [w.labels for w in read_maps(out)] == [(corrected,)]
    assert list(np.load(out)["result_id"]) == [target]


def test_partition_between_edges_and_broker_loses_and_duplicates_nothing(
    start_appliance, val_npz: Path, tmp_path: Path
) -> None:
    # binary protobuf payloads here (the other test uses the default JSON): the hub reads both
    app = start_appliance(edges=2, edge_extra={"mqtt": {"encoding": "protobuf"}})
    assert app.broker is not None
    before = 6
    during = 20
    after = 6
    manifests = {e.layout.device_id: tmp_path / f"{e.layout.device_id}.jsonl" for e in app.edges}

    def feed(count: int, seed: int) -> None:
        threads = [
            threading.Thread(
                target=simulate,
                args=(e.layout.hot_folder, val_npz, count, manifests[e.layout.device_id]),
                kwargs={"seed": seed + i, "tester_id": e.layout.tester_id},
            )
            for i, e in enumerate(app.edges)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def hub_count() -> int:
        return int(hub_rows(app, "SELECT COUNT(*) FROM results")[0][0])

    def edge_done(n: int) -> bool:
        return all(len(list(e.layout.done_dir.glob("*"))) >= n for e in app.edges)

    feed(before, seed=1)
    wait_for(lambda: hub_count() == 2 * before, 60, "the first wafers at the hub")

    app.broker.stop()  # the link is cut: the edges keep taking wafers and buffer them
    feed(during, seed=11)
    wait_for(lambda: edge_done(before + during), 90, "the edges to classify during the outage")
    assert hub_count() == 2 * before
    app.broker.start()
    feed(after, seed=21)

    total = before + during + after
    wait_for(lambda: hub_count() >= 2 * total, 120, "every wafer at the hub after the outage")
    assert not app.crashed()
    rows = hub_rows(app, "SELECT device_id, sequence, lot_id, wafer_id FROM results ORDER BY rowid")
    assert len(rows) == 2 * total  # exactly once: no loss, no duplicate
    for e in app.edges:
        mine = [r for r in rows if r[0] == e.layout.device_id]
        assert [r[1] for r in mine] == list(range(1, total + 1))  # in the edge's order
        sent = {
            (w["lot"], w["wafer"])
            for w in map(json.loads, manifests[e.layout.device_id].read_text().splitlines())
        }
        assert {(r[2], r[3]) for r in mine} == sent
