"""Notification channels: a signed JSON webhook and a REST client for an MES endpoint.

**Webhook**: ``POST`` of the alert's canonical proto3 JSON (the same document as the MQTT alert
payload, see ``docs/messages.md``), ``Content-Type: application/json``. With a shared secret the
request carries ``X-Waferscope-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256(secret, ``"<t>." + body``); receivers recompute it and refuse old timestamps (replay).
``X-Waferscope-Delivery`` is the delivery id, the same on every retry, so a receiver can drop
repeats.

**MES**: ``POST`` or ``PUT`` of a JSON object whose fields are built from the alert with the
configured templates (``{lot_id}``, ``{pattern}``, ...), plus configured headers.

Both answer with a :class:`SendResult`; 2xx is delivered, 408/429/5xx and network errors are
retried with backoff, any other 4xx fails at once (the receiver will not change its mind).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from waferscope.hub.config import MesConfig, NotifyConfig, WebhookConfig
from waferscope.hub.store.ingest import severity_name
from waferscope.protocols import messages
from waferscope.protocols.pb.alert_pb2 import Alert

SIGNATURE_HEADER = "X-Waferscope-Signature"
DELIVERY_HEADER = "X-Waferscope-Delivery"
_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str
    retryable: bool


class Channel(Protocol):
    name: str
    min_severity: str

    def send(self, alert: Alert, *, delivery_id: int) -> SendResult: ...


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance_s: int = 300) -> bool:
    """What a receiver does (used by the tests; documented for integrators)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, ts), header)


def _outcome(response: httpx.Response) -> SendResult:
    code = response.status_code
    if 200 <= code < 300:
        return SendResult(True, code, "", False)
    retryable = code >= 500 or code in _RETRY_STATUS
    return SendResult(False, code, f"HTTP {code}: {response.text[:200]}", retryable)


def _post(
    method: str, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> SendResult:
    try:
        with httpx.Client(timeout=timeout) as client:
            return _outcome(client.request(method, url, content=body, headers=headers))
    except httpx.HTTPError as exc:
        return SendResult(False, None, f"{type(exc).__name__}: {exc}", True)


class WebhookChannel:
    def __init__(self, config: WebhookConfig) -> None:
        self.name = config.name
        self.min_severity: str = config.min_severity
        self.url = config.url
        self.secret = config.secret.get_secret_value() if config.secret else None
        self.timeout = config.timeout_s

    def send(self, alert: Alert, *, delivery_id: int) -> SendResult:
        body = messages.encode(alert)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "waferscope-hub",
            DELIVERY_HEADER: str(delivery_id),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        return _post("POST", self.url, body, headers, self.timeout)


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def alert_fields(alert: Alert) -> dict[str, str]:
    return {
        "alert_id": alert.alert_id,
        "device_id": alert.device_id,
        "rule_id": alert.rule_id,
        "rule_kind": alert.rule_kind,
        "severity": severity_name(alert.severity),
        "title": alert.title,
        "message": alert.message,
        "pattern": alert.pattern,
        "tester_id": alert.tester_id,
        "lot_id": alert.lot_id,
        "wafer_id": alert.wafer_id,
        "raised_time": alert.raised_time.ToJsonString() if alert.raised_time.seconds else "",
        "dedup_key": alert.dedup_key,
    }


def render_payload(mapping: dict[str, str], alert: Alert) -> dict[str, Any]:
    """Fill each template with alert fields (unknown placeholders become empty)."""
    fields = alert_fields(alert)
    return {
        key: _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), ""), template)
        for key, template in mapping.items()
    }


class MesChannel:
    def __init__(self, config: MesConfig) -> None:
        self.name = "mes"
        self.min_severity: str = config.min_severity
        self.config = config

    def send(self, alert: Alert, *, delivery_id: int) -> SendResult:
        body = json.dumps(render_payload(self.config.payload, alert)).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(delivery_id)}
        headers.update(self.config.headers)
        return _post(self.config.method, self.config.url, body, headers, self.config.timeout_s)


def build_channels(config: NotifyConfig) -> list[Channel]:
    channels: list[Channel] = [WebhookChannel(h) for h in config.webhooks]
    if config.mes.enabled:
        channels.append(MesChannel(config.mes))
    return channels
