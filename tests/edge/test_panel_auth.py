"""Operator login on the panel (panel.auth): a real agent, its panel over HTTP and in Chromium."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium
from edge_test_support import Broker, agent_toml, drop, wait_for

from waferscope.edge.app import Wiring, build_agent
from waferscope.edge.config_loader import load_config
from waferscope.edge.panel.operator_auth import (
    OperatorAuth,
    TokenHashError,
    hash_token,
    parse_hash,
    verify_token,
)

TOKEN = "line-7-operator-token"
HASH = hash_token(TOKEN)
RULES = """
[[alerts.rules]]
kind = "parse_failure"
id = "parse-failure"
severity = "error"
"""


def _agent(tmp_path: Path, bundle_dir: Path, broker: Broker, panel_lines: str) -> Wiring:
    extra = f'{panel_lines}\n[panel.auth]\noperator_token_hash = "{HASH}"\n{RULES}'
    w = build_agent(
        load_config(
            agent_toml(tmp_path, bundle_dir, broker.port, extra, panel=True), environ={}
        ).config
    )
    w.agent.start()
    return w


@pytest.fixture
def guarded(tmp_path: Path, bundle_dir: Path, broker: Broker) -> Iterator[tuple[Wiring, str]]:
    """An agent whose panel wants the operator for acks, with one active alert."""
    w = _agent(tmp_path, bundle_dir, broker, "")
    incoming = w.config.ingest.hot_folder.path
    assert incoming is not None
    drop(incoming, "broken.xml", b"<?xml version='1.0'?><Map><oops")
    wait_for(lambda: len(w.store.alerts(active_only=True)) >= 1, 30, what="an alert")
    yield w, f"http://127.0.0.1:{w.panel.port}"  # type: ignore[union-attr]
    w.agent.stop()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def call(
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    jar: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed; ``jar`` keeps the cookies the panel sets."""
    opener = urllib.request.build_opener(NoRedirect())
    sent = dict(headers or {})
    if jar:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
    req = urllib.request.Request(url, data=data, headers=sent)
    try:
        with opener.open(req, timeout=20) as r:
            status, got, body = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, got, body = e.code, e.headers, e.read()
    if jar is not None:
        for line in got.get_all("Set-Cookie") or []:
            name, _, value = line.split(";")[0].partition("=")
            jar[name.strip()] = value.strip()
    return status, {k.lower(): v for k, v in got.items()}, body


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def test_token_hash_round_trip_and_sessions() -> None:
    assert verify_token(TOKEN, HASH) and not verify_token(TOKEN + "x", HASH)
    assert hash_token(TOKEN) != HASH  # salted
    for bad in ("", "scrypt$1$8$1$aa$bb", "bcrypt$x", "scrypt$16384$8$1$!!$??"):
        with pytest.raises(TokenHashError):
            parse_hash(bad)
    auth = OperatorAuth(HASH, read_only_open=True, session_s=60)
    assert auth.login("Ana", "wrong") is None
    cookie = auth.login("Ana", TOKEN)
    assert cookie and auth.operator(cookie) == "Ana"
    name64, expires, sig = cookie.split(".")
    assert auth.operator(f"{name64}.{int(expires) + 999}.{sig}") is None  # forged expiry
    assert OperatorAuth(HASH, True, 60).operator(cookie) is None  # another panel's key
    assert auth.csrf_ok(cookie, auth.csrf(cookie)) and not auth.csrf_ok(cookie, "x")
    old = OperatorAuth(HASH, True, -1, key=auth.key).login("Ana", TOKEN)
    assert auth.operator(old) is None  # expired


def test_ack_needs_the_operator_reads_stay_open(guarded: tuple[Wiring, str]) -> None:
    w, root = guarded
    alert_id = w.store.alerts(active_only=True)[0]["alert_id"]
    status, _, page = call(root + "/")
    assert (
        status == 200
        and b"Log in to acknowledge" in page
        and b"button" not in page.split(b"<main>")[1].split(b"</table>")[0]
    )
    assert call(root + "/api/alerts")[0] == 200
    # no login: the form goes to the login page, the API answers 401, nothing changes
    status, headers, _ = call(root + f"/alerts/{alert_id}/ack", data=form(by="x", back="/"))
    assert status == 303 and headers["location"].startswith("/login?next=")
    js = {"Content-Type": "application/json"}
    assert call(root + f"/api/alerts/{alert_id}/ack", data=b"{}", headers=js)[0] == 401
    bad = {**js, "Authorization": "Bearer not-the-token"}
    assert call(root + f"/api/alerts/{alert_id}/ack", data=b"{}", headers=bad)[0] == 401
    assert w.store.alerts(active_only=True)[0]["alert_id"] == alert_id
    # a login session: the API also wants the CSRF header, the form its CSRF field
    jar: dict[str, str] = {}
    assert call(root + "/login", data=form(name="Ana", token="nope"), jar=jar)[0] == 401
    status, headers, _ = call(
        root + "/login", data=form(name="Ana", token=TOKEN, next="/alerts"), jar=jar
    )
    assert status == 303 and headers["location"] == "/alerts"
    assert (
        "HttpOnly" in headers["set-cookie"] and "samesite=strict" in headers["set-cookie"].lower()
    )
    assert call(root + f"/api/alerts/{alert_id}/ack", data=b"{}", headers=js, jar=jar)[0] == 403
    assert call(root + f"/alerts/{alert_id}/ack", data=form(back="/"), jar=jar)[0] == 403
    assert w.store.alerts(active_only=True)[0]["alert_id"] == alert_id
    # the bearer token works without a session
    good = {**js, "Authorization": f"Bearer {TOKEN}"}
    status, _, body = call(root + f"/api/alerts/{alert_id}/ack", data=b"{}", headers=good)
    assert status == 200 and json.loads(body)["changed"] is True
    assert not w.store.alerts(active_only=True)


def test_login_then_ack_in_chromium(guarded: tuple[Wiring, str]) -> None:
    if MISSING and not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    from selenium.webdriver.common.by import By

    w, root = guarded
    alert_id = w.store.alerts(active_only=True)[0]["alert_id"]
    with chromium(1400, 900) as driver:
        driver.get(root + "/alerts")
        assert not driver.find_elements(By.CSS_SELECTOR, "button.ack")
        driver.find_element(By.CSS_SELECTOR, "a.login").click()
        wait_for(lambda: "/login" in driver.current_url, 10, what="login page")
        driver.find_element(By.ID, "name").send_keys("Ana Operator")
        driver.find_element(By.ID, "token").send_keys("wrong-token")
        driver.find_element(By.ID, "login-submit").click()
        wait_for(lambda: driver.find_elements(By.ID, "login-error"), 10, what="refusal")
        driver.find_element(By.ID, "name").send_keys("Ana Operator")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "login-submit").click()
        wait_for(lambda: driver.find_elements(By.ID, "operator"), 10, what="logged in")
        assert driver.current_url.endswith("/alerts")
        row = driver.find_element(By.CSS_SELECTOR, f"tr[data-alert-id='{alert_id}']")
        row.find_element(By.CSS_SELECTOR, "button.ack").click()
        wait_for(lambda: not w.store.alerts(active_only=True), 10, what="ack")
    acked = [a for a in w.store.alerts() if a["alert_id"] == alert_id]
    assert acked[0]["acknowledged_by"] == "Ana Operator"


def test_closed_panel_needs_the_login_for_reads_too(
    tmp_path: Path, bundle_dir: Path, broker: Broker
) -> None:
    w = _agent(tmp_path, bundle_dir, broker, "read_only_open = false")
    try:
        root = f"http://127.0.0.1:{w.panel.port}"  # type: ignore[union-attr]
        status, headers, _ = call(root + "/alerts")
        assert status == 303 and headers["location"] == "/login?next=/alerts"
        assert call(root + "/api/status")[0] == 401
        for open_path in ("/healthz", "/readyz", "/metrics", "/login", "/static/panel.css"):
            assert call(root + open_path)[0] in (200, 503), open_path
        status, _, _ = call(root + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        jar: dict[str, str] = {}
        call(root + "/login", data=form(name="Ana", token=TOKEN), jar=jar)
        assert call(root + "/alerts", jar=jar)[0] == 200
        time.sleep(0)
    finally:
        w.agent.stop()


def test_a_bad_hash_is_a_config_error(tmp_path: Path, bundle_dir: Path, broker: Broker) -> None:
    from waferscope.edge.config_loader import ConfigError

    extra = '[panel.auth]\noperator_token_hash = "scrypt$16384$8$1$cut-short"\n'
    with pytest.raises(ConfigError, match="operator_token_hash"):
        load_config(agent_toml(tmp_path, bundle_dir, broker.port, extra, panel=True), environ={})
