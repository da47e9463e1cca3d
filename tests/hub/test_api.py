"""The REST API and the pages through litestar's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hub_data import make_result, real_grids, results
from hub_testing import PASSWORD, bearer, feed
from litestar.testing import TestClient

from waferscope.hub.store.queries import PATTERN_CLASSES
from waferscope.protocols import messages
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.formats import read_maps
from waferscope.protocols.pb import alert_pb2, common_pb2


@pytest.fixture
def client(hub):  # type: ignore[no-untyped-def]
    with TestClient(hub.web_app()) as c:
        yield c


def test_token_login_and_me(hub, client) -> None:  # type: ignore[no-untyped-def]
    bad = client.post("/api/v1/auth/token", json={"username": "reviewer1", "password": "nope"})
    assert bad.status_code == 401
    ok = client.post("/api/v1/auth/token", json={"username": "reviewer1", "password": PASSWORD})
    assert ok.status_code == 200 and ok.json()["role"] == "reviewer"
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {ok.json()['access_token']}"})
    assert me.json()["username"] == "reviewer1" and "review" in me.json()["permissions"]
    audit = client.get("/api/v1/audit", headers=bearer(hub, "engineer")).json()["entries"]
    assert [e["action"] for e in audit[:2]] == ["login", "login.failed"]


def test_results_filters_detail_and_pictures(hub, client, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    feed(
        hub, [*results(data_dir, 12, tester="T-01"), *results(data_dir, 8, start=12, tester="T-02")]
    )
    h = bearer(hub, "operator")
    page = client.get("/api/v1/results", params={"limit": 5}, headers=h).json()
    assert len(page["results"]) == 5 and page["next"]
    rest = client.get(
        "/api/v1/results", params={"before": page["next"], "limit": 50}, headers=h
    ).json()
    assert len(rest["results"]) == 15
    t2 = client.get("/api/v1/results", params={"tester": "T-02"}, headers=h).json()["results"]
    assert len(t2) == 8 and {r["tester_id"] for r in t2} == {"T-02"}
    rid = t2[0]["result_id"]
    detail = client.get(f"/api/v1/results/{rid}", headers=h).json()
    assert detail["wafer"]["die_count"] > 0 and len(detail["probabilities"]["pattern"]) == 9
    assert detail["heatmap"]["rows"] == 64
    for picture in ("map.png", "overlay.png"):
        res = client.get(f"/ui/wafers/{rid}/{picture}", headers=h)
        assert res.status_code == 200 and res.content[:8] == b"\x89PNG\r\n\x1a\n"
    near = client.get(f"/api/v1/results/{rid}/similar", headers=h).json()["neighbours"]
    assert len(near) == 8 and near == sorted(near, key=lambda n: n["distance"])
    assert rid not in {n["result_id"] for n in near}
    assert client.get("/api/v1/results/nope", headers=h).status_code == 404


def test_review_through_the_api(hub, client, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    grids = real_grids(data_dir, 3)
    msgs = [make_result(g, lab, i, confidence=0.3 + i * 0.05) for i, (g, lab) in enumerate(grids)]
    feed(hub, msgs)
    h = bearer(hub, "reviewer")
    queue = client.get("/api/v1/queue", headers=h).json()
    assert [q["result_id"] for q in queue["items"]] == [m.result_id for m in msgs]
    head = queue["items"][0]["result_id"]
    res = client.post(
        f"/api/v1/results/{head}/review",
        headers=h,
        json={"pattern": "Scratch", "root_cause": "handling", "comment": "long line"},
    )
    assert res.status_code == 201, res.text
    assert res.json()["action"] == "correct" and res.json()["next"] == msgs[1].result_id
    assert (
        client.post(f"/api/v1/results/{head}/review", headers=h, json={"pattern": " "}).status_code
        == 400
    )
    assert client.post(f"/api/v1/results/{msgs[1].result_id}/skip", headers=h).json()["skipped"]
    left = client.get("/api/v1/queue", headers=h).json()["items"]
    assert [q["result_id"] for q in left] == [msgs[2].result_id]
    detail = client.get(f"/api/v1/results/{head}", headers=h).json()
    assert (
        detail["label"]["pattern"] == "Scratch" and detail["reviews"][0]["comment"] == "long line"
    )
    assert (
        client.post(
            f"/api/v1/results/{head}/review",
            headers=bearer(hub, "operator"),
            json={"pattern": "none"},
        ).status_code
        == 403
    )


def test_alerts_and_acknowledge(hub, client) -> None:  # type: ignore[no-untyped-def]
    alert = alert_pb2.Alert(
        alert_id=messages.new_message_id(),
        device_id="edge-01",
        sequence=1,
        source=alert_pb2.ALERT_SOURCE_EDGE,
        rule_id="fail-density",
        rule_kind="fail_density",
        severity=common_pb2.SEVERITY_WARNING,
        title="fail density 42%",
        tester_id="T-01",
    )
    alert.raised_time.GetCurrentTime()
    feed(hub, [alert, alert])
    h = bearer(hub, "operator")
    rows = client.get("/api/v1/alerts", params={"acknowledged": False}, headers=h).json()["alerts"]
    assert [a["alert_id"] for a in rows] == [alert.alert_id]
    assert client.post(f"/api/v1/alerts/{alert.alert_id}/ack", headers=h).json()["acknowledged"]
    assert (
        client.get("/api/v1/alerts", params={"acknowledged": False}, headers=h).json()["alerts"]
        == []
    )
    page = client.get("/ui/alerts?show=all", headers=h)
    assert "fail density 42%" in page.text and "ack by operator1" in page.text


def test_upload_real_tester_files(hub, client, tester_dir: Path) -> None:  # type: ignore[no-untyped-def]
    h = bearer(hub, "reviewer")
    files = [tester_dir / "stdf" / "a595.stdf.gz", tester_dir / "tsk" / "001.QR2352-D5U278-CP-1.gz"]
    total = 0
    for path in files:
        res = client.post(
            "/api/v1/uploads",
            headers=h,
            files={"data": (path.name, path.read_bytes(), "application/octet-stream")},
        )
        assert res.status_code == 201, res.text
        expected = len(list(read_maps(path)))
        assert res.json()["wafers"] == expected
        total += expected
        detail = client.get(f"/api/v1/results/{res.json()['result_ids'][0]}", headers=h).json()
        assert detail["origin"] == "upload" and detail["queue"]["state"] == "open"
        assert detail["wafer"]["die_count"] > 0 and detail["wafer"]["source_name"] == path.name
    queue = client.get("/api/v1/queue", params={"limit": 100}, headers=h).json()
    assert queue["counts"].get("low_confidence", 0) + queue["counts"].get("upload", 0) == total
    bad = client.post(
        "/api/v1/uploads",
        headers=h,
        files={"data": ("junk.bin", b"\x00garbage" * 50, "application/octet-stream")},
    )
    assert bad.status_code == 422 and "junk.bin" in bad.text
    assert (
        client.post(
            "/api/v1/uploads",
            headers=bearer(hub, "operator"),
            files={"data": ("x", b"x", "text/plain")},
        ).status_code
        == 403
    )


def test_export_reads_back_with_labels(hub, client, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    grids = real_grids(data_dir, 6)
    msgs = [make_result(g, lab, i, confidence=0.3) for i, (g, lab) in enumerate(grids)]
    feed(hub, msgs)
    h = bearer(hub, "reviewer")
    chosen = {m.result_id: lab for m, (_, lab) in zip(msgs[:4], grids[:4], strict=True)}
    chosen[msgs[3].result_id] = "Blob"  # a label outside the WM-811K classes
    for rid, lab in chosen.items():
        client.post(
            f"/api/v1/results/{rid}/review",
            headers=h,
            json={"pattern": lab, "root_cause": "probe-card"},
        )
    assert client.get("/api/v1/labels/export", headers=h).status_code == 403
    res = client.get("/api/v1/labels/export", headers=bearer(hub, "engineer"))
    assert res.status_code == 200
    path = tmp_path / "labels.npz"
    path.write_bytes(res.content)
    arrays = load_labelled_arrays(path)
    assert (
        len(arrays) == 4
        and arrays.class_names[:9] == PATTERN_CLASSES
        and arrays.class_names[9] == "Blob"
    )
    wafers = list(read_maps(path))
    by_id = dict(zip(np.load(path)["result_id"], wafers, strict=True))
    for rid, lab in chosen.items():
        wafer = by_id[rid]
        assert wafer.labels == (lab,)
        grid = grids[[m.result_id for m in msgs].index(rid)][0]
        assert np.array_equal(wafer.to_dense("state"), grid[np.ix_(grid.any(1), grid.any(0))])
    extra = np.load(path)
    assert list(extra["root_cause_names"]) == ["probe-card"]
    entries = client.get(
        "/api/v1/audit", params={"action": "export.labels"}, headers=bearer(hub, "engineer")
    ).json()["entries"]
    assert entries and entries[0]["detail"]["wafers"] == 4


def test_health_metrics_openapi(hub, client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["schema"] is True
    metrics = client.get("/metrics")
    assert "waferscope_hub_ingest_messages_total" in metrics.text
    spec = client.get("/api/schema/openapi.json").json()
    assert "/api/v1/results" in spec["paths"] and "bearer" in spec["components"]["securitySchemes"]


def test_pages_render(hub, client, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    msgs = list(results(data_dir, 10, confidence=0.4))
    feed(hub, msgs)
    h = bearer(hub, "reviewer")
    rid = msgs[0].result_id
    for url, needle in [
        ("/ui/queue", rid),
        (f"/ui/wafers/{rid}", "review-form"),
        (f"/ui/wafers/{rid}/similar", "similar-table"),
        ("/ui/results?tester=T-01&pattern=" + msgs[1].pattern.name, msgs[1].result_id),
        ("/ui/trends?tester=T-01&days=3", "<svg"),
        ("/ui/alerts", "No alerts"),
        ("/ui/devices", "edge-01"),
        ("/ui/help", "Keyboard shortcuts"),
        ("/ui/upload", "upload-form"),
    ]:
        res = client.get(url, headers=h)
        assert res.status_code == 200, (url, res.text[-400:])
        assert needle in res.text, url
    shap = client.get(f"/ui/wafers/{rid}/shap", headers=h)
    assert "not available" in shap.text  # no engine configured on this hub
    form = client.post(
        f"/ui/wafers/{rid}/review",
        headers=h,
        follow_redirects=False,
        data={"pattern": "Donut", "root_cause": "", "comment": ""},
    )
    assert form.status_code == 303 and form.headers["location"].startswith("/ui/wafers/")
    assert rid not in client.get("/ui/queue", headers=h).text
    login = client.post(
        "/login",
        data={"username": "reviewer1", "password": PASSWORD, "next": "//evil.example"},
        follow_redirects=False,
    )
    assert login.status_code == 303 and login.headers["location"] == "/ui/queue"
    assert "httponly" in login.headers["set-cookie"].lower()
    assert "samesite=strict" in login.headers["set-cookie"].lower()
    _ = io  # keep the import for readers of binary responses


def _unique_result(seed: int):  # type: ignore[no-untyped-def]
    """A result whose map no other test draws (the picture cache is keyed by blob content)."""
    rng = np.random.default_rng(seed)
    grid = np.where(rng.random((31, 29)) < 0.2, 2, 1).astype(np.uint8)
    grid[0, :3] = 0
    return make_result(grid, "Random", seed, confidence=0.4)


def _blob_keys(hub, result_id: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from waferscope.hub.db.schema import Heatmap, Result, Wafer

    with hub.db.session() as s:
        map_blob = s.scalar(
            select(Wafer.map_blob)
            .join(Result, Result.wafer_ref == Wafer.id)
            .where(Result.result_id == result_id)
        )
        heat = s.get(Heatmap, result_id)
        assert map_blob and heat is not None
        return map_blob, heat.blob


def test_pictures_of_missing_or_corrupt_blobs(hub, client, caplog) -> None:  # type: ignore[no-untyped-def]
    """A lost blob is a 404 and a damaged one a 409, each naming the blob and logged once."""
    import logging
    import struct
    import zlib

    msgs = [_unique_result(9000 + i) for i in range(4)]
    feed(hub, msgs)
    h = bearer(hub, "reviewer")
    root = hub.blobs.root

    def ask(rid: str, picture: str, status: int, *needles: str) -> None:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="waferscope.hub"):
            res = client.get(f"/ui/wafers/{rid}/{picture}", headers=h)
        assert res.status_code == status, (picture, res.status_code, res.text[-300:])
        assert "Traceback" not in res.text and "Internal Server Error" not in res.text
        for needle in needles:
            assert needle in res.text, (picture, needle, res.text[-300:])
        logged = [r for r in caplog.records if r.name.startswith("waferscope.hub")]
        assert len(logged) == 1 and logged[0].exc_info is None, logged
        assert all(n in logged[0].getMessage() for n in needles)

    # the map blob is gone
    missing = msgs[0].result_id
    map_key, _ = _blob_keys(hub, missing)
    (root / map_key).unlink()
    for picture in ("map.png", "overlay.png"):
        ask(missing, picture, 404, "missing", map_key, missing)

    # the map blob is not a map blob at all, or its states do not fit its shape
    garbage = msgs[1].result_id
    map_key, _ = _blob_keys(hub, garbage)
    (root / map_key).write_bytes(b"\x00garbage" * 4)
    for picture in ("map.png", "overlay.png"):
        ask(garbage, picture, 409, "corrupt", map_key, "not a version-1 map blob")
    short = msgs[2].result_id
    map_key, _ = _blob_keys(hub, short)
    (root / map_key).write_bytes(struct.pack("<2sBBHHii", b"WM", 1, 0, 31, 29, 0, 0) + b"\x55" * 9)
    ask(short, "map.png", 409, "corrupt", map_key, "state bytes")

    # the heatmap blob is gone, then damaged; the map itself still draws
    heat_case = msgs[3].result_id
    _, heat_key = _blob_keys(hub, heat_case)
    (root / heat_key).unlink()
    ask(heat_case, "overlay.png", 404, "missing", heat_key, "heatmap")
    assert client.get(f"/ui/wafers/{heat_case}/map.png", headers=h).status_code == 200
    header = struct.pack("<2sBBHH", b"WH", 1, 1, 64, 64)
    (root / heat_key).write_bytes(header + zlib.compress(b"\x01" * 100))
    ask(heat_case, "overlay.png", 409, "corrupt", heat_key, "wrong number of bytes")


def test_review_form_without_a_pattern_says_so(hub, client, tester_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """An unclassified upload saved without a pattern: the page says why, and keeps the form."""
    h = bearer(hub, "reviewer")
    path = tester_dir / "stdf" / "a595.stdf.gz"
    up = client.post(
        "/api/v1/uploads",
        headers=h,
        files={"data": (path.name, path.read_bytes(), "application/octet-stream")},
    )
    rid = up.json()["result_ids"][0]
    page = client.get(f"/ui/wafers/{rid}", headers=h).text
    assert "not classified" in page and 'id="review-error"' not in page
    assert "checked" not in page.split('id="review-form"')[1].split("</fieldset>")[0]
    res = client.post(
        f"/ui/wafers/{rid}/review",
        headers=h,
        follow_redirects=False,
        data={"root_cause": "probe-card", "comment": "looks like a <scratch>"},
    )
    assert res.status_code == 422, (res.status_code, res.headers.get("location"))
    assert 'id="review-error"' in res.text and "Choose a pattern" in res.text
    assert 'value="probe-card"' in res.text
    assert ">looks like a &lt;scratch&gt;</textarea>" in res.text
    detail = client.get(f"/api/v1/results/{rid}", headers=h).json()
    assert detail["label"] is None and detail["queue"]["state"] == "open"
    # a blank pattern is no pattern either
    kept = client.post(f"/ui/wafers/{rid}/review", headers=h, data={"pattern": " ", "comment": "x"})
    assert kept.status_code == 422 and "Choose a pattern" in kept.text
    ok = client.post(
        f"/ui/wafers/{rid}/review",
        headers=h,
        follow_redirects=False,
        data={"pattern": "Scratch", "root_cause": "probe-card", "comment": ""},
    )
    assert ok.status_code == 303
    assert client.get(f"/api/v1/results/{rid}", headers=h).json()["label"]["pattern"] == "Scratch"


def test_help_lists_every_key_the_page_script_handles(hub, client, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """The script takes its keys from the page (``data-shortcuts``); the help page shows each."""
    import html
    import json
    import re

    feed(hub, list(results(data_dir, 2, confidence=0.4)))
    h = bearer(hub, "reviewer")
    script = client.get("/static/hub.js").text
    # the script compares the key with none of its own (modifier keys pressed alone aside) ...
    named = set(re.findall(r"""ev\.key\s*===?\s*["']([^"']+)["']""", script))
    assert named <= {"Shift", "Control", "Alt", "Meta"}, named
    actions = set(re.findall(r'^\s*"([a-z-]+)": function', script, re.MULTILINE))
    assert {"go", "choose", "save", "row-next"} <= actions

    def table_of(text: str) -> dict[str, dict[str, dict[str, object]]]:
        found = re.search(r'<body [^>]*data-shortcuts="([^"]*)"', text)
        assert found, text[:400]
        return json.loads(html.unescape(found.group(1)))  # type: ignore[no-any-return]

    help_page = client.get("/ui/help", headers=h).text
    table = table_of(help_page)
    rid = client.get("/api/v1/queue", headers=h).json()["items"][0]["result_id"]
    for url in ("/ui/queue", f"/ui/wafers/{rid}", "/login"):  # the same table on every page
        assert table_of(client.get(url, headers=h).text) == table
    listed = {(key, str(spec["action"])) for keys in table.values() for key, spec in keys.items()}
    # ... so what it handles is what the table lists: every action listed is one it has, and
    # every action it has is listed
    assert {action.split(":")[0] for _, action in listed} == actions
    rows = re.findall(r'<tr data-keys="([^"]*)" data-action="([^"]*)">', help_page)
    shown = {(k, html.unescape(a)) for keys, a in rows for k in html.unescape(keys).split(" | ")}
    assert shown == listed
    for key in ("g q", "g r", "g a", "g t", "g d", "?", "ArrowDown", "ArrowUp", "Control+Enter"):
        assert key in {k for k, _ in listed}, key
    for needle in ("<kbd>g</kbd> <kbd>t</kbd>", "<kbd>g</kbd> <kbd>d</kbd>", "<kbd>↓</kbd>"):
        assert needle in help_page, needle
    for _, action in listed:
        if action.startswith("go:"):
            assert client.get(action[3:], headers=h).status_code == 200, action
