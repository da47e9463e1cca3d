"""Every MQTT topic name waferscope uses, built and parsed in this one module.

The tree (``docs/messages.md`` tells the whole story)::

    waferscope/v1/<site>/<device_id>/<kind>

    kind        direction     payload        retained  QoS
    result      edge -> hub   WaferResult    no        1
    alert       edge -> hub   Alert          no        1
    status      edge -> hub   DeviceStatus   YES       1   (also the MQTT last-will topic)
    birth       edge -> hub   DeviceBirth    no        1
    deploy      hub -> edge   DeployCommand  no        1
    deploy-ack  edge -> hub   DeployAck      no        1
    shadow-report edge -> hub ShadowReport   no        1   (a candidate release on trial)
    label       hub -> edge   WaferLabel     no        1   (a reviewer's label, back to its edge)

Only ``status`` is retained, so a subscriber learns every device's current state at once; events
(results, alerts, births, commands, acks) are never retained, or a restarted hub would ingest the
last one of each device a second time and an edge would replay an old command.

``v1`` is the major schema version (the proto package is ``waferscope.v1``): a breaking change
gets a new tree beside this one. ``<site>`` groups devices (a fab, a building, a test floor) so a
broker bridge or an ACL can take one site's subtree; a device without a site uses the placeholder
``_`` (:data:`NO_SITE`), which :func:`parse` turns back into ``None``. Device ids are unique across
sites; the hub keys on them.

Ids (device, site, shared-subscription group) are 1 to 64 characters from ``A-Z a-z 0-9 . _ -``
starting with a letter or a digit. That excludes everything MQTT gives a meaning to (``/`` levels,
``+`` and ``#`` wildcards, a leading ``$`` for broker topics, NUL) as well as spaces and control
characters that make ACL patterns, log lines and file names awkward. Ids are case-sensitive, as MQTT
topics are. A bad id raises :class:`~waferscope.protocols.errors.TopicError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, NamedTuple

from waferscope.protocols.errors import TopicError

ROOT: Final = "waferscope"
"""First level of every waferscope topic."""

SCHEMA_MAJOR: Final = "v1"
"""Major schema version; the second topic level, matching the proto package ``waferscope.v1``."""

PREFIX: Final = f"{ROOT}/{SCHEMA_MAJOR}"
"""The common start of every topic name."""

NO_SITE: Final = "_"
"""The site level of a device that belongs to no site (never a valid id itself)."""

SHARE_PREFIX: Final = "$share"
"""MQTT v5 shared-subscription prefix: ``$share/<group>/<filter>``."""

MAX_ID_LENGTH: Final = 64
"""Longest device id, site or subscription group, in characters (all ASCII)."""

_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LEVELS: Final = 5  # waferscope / v1 / site / device / kind


class TopicKind(StrEnum):
    """The last topic level: which message a topic carries."""

    RESULT = "result"
    ALERT = "alert"
    STATUS = "status"
    BIRTH = "birth"
    DEPLOY = "deploy"
    DEPLOY_ACK = "deploy-ack"
    SHADOW_REPORT = "shadow-report"
    LABEL = "label"


class Direction(StrEnum):
    """Who publishes on a topic."""

    EDGE_TO_HUB = "edge-to-hub"
    HUB_TO_EDGE = "hub-to-edge"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a kind of topic is used: publisher, retain flag, QoS and the payload message."""

    kind: TopicKind
    direction: Direction
    retained: bool
    qos: int
    message: str  # the waferscope.v1 message name of the payload


TOPIC_SPECS: Final[Mapping[TopicKind, TopicSpec]] = MappingProxyType(
    {
        TopicKind.RESULT: TopicSpec(
            TopicKind.RESULT, Direction.EDGE_TO_HUB, False, 1, "WaferResult"
        ),
        TopicKind.ALERT: TopicSpec(TopicKind.ALERT, Direction.EDGE_TO_HUB, False, 1, "Alert"),
        TopicKind.STATUS: TopicSpec(
            TopicKind.STATUS, Direction.EDGE_TO_HUB, True, 1, "DeviceStatus"
        ),
        TopicKind.BIRTH: TopicSpec(TopicKind.BIRTH, Direction.EDGE_TO_HUB, False, 1, "DeviceBirth"),
        TopicKind.DEPLOY: TopicSpec(
            TopicKind.DEPLOY, Direction.HUB_TO_EDGE, False, 1, "DeployCommand"
        ),
        TopicKind.DEPLOY_ACK: TopicSpec(
            TopicKind.DEPLOY_ACK, Direction.EDGE_TO_HUB, False, 1, "DeployAck"
        ),
        TopicKind.SHADOW_REPORT: TopicSpec(
            TopicKind.SHADOW_REPORT, Direction.EDGE_TO_HUB, False, 1, "ShadowReport"
        ),
        TopicKind.LABEL: TopicSpec(TopicKind.LABEL, Direction.HUB_TO_EDGE, False, 1, "WaferLabel"),
    }
)
"""One entry per :class:`TopicKind`; the single place retain flags and QoS are decided."""

LAST_WILL_KIND: Final = TopicKind.STATUS
"""The kind of topic an edge registers its MQTT last will on (retained, like every status)."""


# --------------------------------------------------------------------------- ids


def validate_id(value: object, what: str = "device id") -> str:
    """Return ``value`` when it is a valid topic id, else raise :class:`TopicError`.

    ``what`` names the id in the message ("device id", "site", "subscription group").
    """
    if not isinstance(value, str):
        raise TopicError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise TopicError(f"{what} is empty")
    shown = _show(value)
    if len(value) > MAX_ID_LENGTH:
        raise TopicError(f"{what} {shown} is longer than {MAX_ID_LENGTH} characters")
    for char, meaning in _MQTT_SPECIAL.items():
        if char in value:
            raise TopicError(f"{what} {shown} contains {char!r}, {meaning}")
    if value.startswith("$"):
        raise TopicError(f"{what} {shown} starts with '$', which MQTT reserves for broker topics")
    if _ID_PATTERN.fullmatch(value) is None:
        raise TopicError(
            f"{what} {shown} must start with a letter or digit and hold only"
            " letters, digits, '.', '_' and '-'"
        )
    return value


_MQTT_SPECIAL: Final[Mapping[str, str]] = MappingProxyType(
    {
        "/": "the MQTT topic level separator",
        "+": "the MQTT single-level wildcard",
        "#": "the MQTT multi-level wildcard",
        "\x00": "a NUL character, which MQTT forbids in topic names",
    }
)


def _show(value: str) -> str:
    """A short, printable rendering of a (possibly hostile) value for error messages."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return ascii(text)


def _site_level(site: str | None) -> str:
    return NO_SITE if site is None else validate_id(site, "site")


# --------------------------------------------------------------------------- addresses


class TopicAddress(NamedTuple):
    """What a topic name says: which kind of message, for which site and device.

    Unpacks as ``kind, site, device_id = parse(topic)``; ``site`` is ``None`` for a device without
    a site.
    """

    kind: TopicKind
    site: str | None
    device_id: str

    @property
    def topic(self) -> str:
        """The topic name of this address (validates the ids)."""
        return topic_name(self.kind, self.device_id, site=self.site)

    @property
    def spec(self) -> TopicSpec:
        """Retain flag, QoS, direction and payload message of this kind of topic."""
        return TOPIC_SPECS[self.kind]


def topic_name(kind: TopicKind | str, device_id: str, *, site: str | None = None) -> str:
    """The topic of one kind of message for one device."""
    try:
        topic_kind = TopicKind(kind)
    except ValueError:
        raise TopicError(f"unknown topic kind {_show(str(kind))}") from None
    return f"{PREFIX}/{_site_level(site)}/{validate_id(device_id)}/{topic_kind.value}"


def result_topic(device_id: str, *, site: str | None = None) -> str:
    """Where an edge publishes its WaferResults (QoS 1, not retained)."""
    return topic_name(TopicKind.RESULT, device_id, site=site)


def alert_topic(device_id: str, *, site: str | None = None) -> str:
    """Where an edge publishes its Alerts (QoS 1, not retained)."""
    return topic_name(TopicKind.ALERT, device_id, site=site)


def status_topic(device_id: str, *, site: str | None = None) -> str:
    """Where an edge publishes its DeviceStatus (QoS 1, RETAINED) and registers its last will."""
    return topic_name(TopicKind.STATUS, device_id, site=site)


def last_will_topic(device_id: str, *, site: str | None = None) -> str:
    """The last-will topic of an edge: its status topic (the will is retained too)."""
    return status_topic(device_id, site=site)


def birth_topic(device_id: str, *, site: str | None = None) -> str:
    """Where an edge publishes its DeviceBirth once per connection (QoS 1, not retained)."""
    return topic_name(TopicKind.BIRTH, device_id, site=site)


def deploy_topic(device_id: str, *, site: str | None = None) -> str:
    """Where the hub sends DeployCommands to one edge (QoS 1, not retained)."""
    return topic_name(TopicKind.DEPLOY, device_id, site=site)


def deploy_ack_topic(device_id: str, *, site: str | None = None) -> str:
    """Where an edge answers DeployCommands with DeployAcks (QoS 1, not retained)."""
    return topic_name(TopicKind.DEPLOY_ACK, device_id, site=site)


def shadow_report_topic(device_id: str, *, site: str | None = None) -> str:
    """Where an edge reports a candidate release's shadow trial (QoS 1, not retained)."""
    return topic_name(TopicKind.SHADOW_REPORT, device_id, site=site)


def kinds_towards(direction: Direction) -> list[TopicKind]:
    """The topic kinds published in ``direction``, in table order (broker ACLs are built on it)."""
    return [kind for kind, spec in TOPIC_SPECS.items() if spec.direction is direction]


def label_topic(device_id: str, *, site: str | None = None) -> str:
    """Where the hub sends a reviewer's label to the edge that produced the wafer (QoS 1)."""
    return topic_name(TopicKind.LABEL, device_id, site=site)


def is_retained(kind: TopicKind | str) -> bool:
    """Whether messages of this kind are published with the retain flag (only ``status``)."""
    return TOPIC_SPECS[_kind(kind)].retained


def qos(kind: TopicKind | str) -> int:
    """The MQTT QoS messages of this kind are published and subscribed with."""
    return TOPIC_SPECS[_kind(kind)].qos


def _kind(kind: TopicKind | str) -> TopicKind:
    try:
        return TopicKind(kind)
    except ValueError:
        raise TopicError(f"unknown topic kind {_show(str(kind))}") from None


# --------------------------------------------------------------------------- parsing


def parse(topic: str) -> TopicAddress:
    """Split a topic name into (kind, site, device id); raise :class:`TopicError` if it is not one.

    Accepts only concrete topic names as they arrive on a message: filters with wildcards,
    ``$share/...`` forms and broker (``$SYS``) topics are refused.
    """
    if not isinstance(topic, str):
        raise TopicError(f"a topic must be a string, got {type(topic).__name__}")
    if not topic:
        raise TopicError("empty topic")
    shown = _show(topic)
    if "\x00" in topic:
        raise TopicError(f"topic {shown} contains a NUL character")
    if "+" in topic or "#" in topic:
        raise TopicError(f"topic {shown} is a subscription filter (wildcard), not a topic name")
    levels = topic.split("/")
    if levels[:2] != [ROOT, SCHEMA_MAJOR]:
        raise TopicError(f"topic {shown} does not start with {PREFIX}/")
    if len(levels) != _LEVELS:
        raise TopicError(
            f"topic {shown} has {len(levels)} levels, expected {_LEVELS}"
            f" ({PREFIX}/<site>/<device_id>/<kind>)"
        )
    _, _, site_level, device_level, kind_level = levels
    try:
        kind = TopicKind(kind_level)
    except ValueError:
        known = ", ".join(k.value for k in TopicKind)
        raise TopicError(f"topic {shown}: unknown kind {_show(kind_level)} ({known})") from None
    site = None if site_level == NO_SITE else validate_id(site_level, "site")
    device_id = validate_id(device_level)
    return TopicAddress(kind=kind, site=site, device_id=device_id)


# --------------------------------------------------------------------------- subscriptions


def subscription(
    kind: TopicKind | str | None = None,
    *,
    site: str | None = None,
    device_id: str | None = None,
    any_site: bool = True,
) -> str:
    """A subscription filter: ``None`` for kind / device id means every kind / every device.

    With ``any_site`` (the default) and no ``site``, the filter matches every site including the
    no-site placeholder; pass ``any_site=False`` to match only devices without a site.
    """
    site_level = _site_level(site) if site is not None or not any_site else "+"
    device_level = "+" if device_id is None else validate_id(device_id)
    kind_level = "#" if kind is None else _kind(kind).value
    return f"{PREFIX}/{site_level}/{device_level}/{kind_level}"


def shared_subscription(
    group: str, kind: TopicKind | str | None = None, *, site: str | None = None
) -> str:
    """The MQTT v5 shared-subscription form ``$share/<group>/<filter>`` over every device.

    The broker hands each message to one subscriber of the group, so several hub ingest workers
    split the load. Do not use it for ``status``: brokers do not deliver retained messages to a
    new shared subscription, so a worker would miss the current status of every device.
    """
    return f"{SHARE_PREFIX}/{validate_id(group, 'subscription group')}/" + subscription(
        kind, site=site
    )


def hub_subscriptions(*, group: str | None = None, site: str | None = None) -> list[str]:
    """The filters a hub subscribes to: every edge-to-hub kind, for every device.

    With a ``group``, the event kinds use shared subscriptions (several ingest workers split the
    stream) while ``status`` stays a plain subscription so that retained statuses arrive.
    """
    filters: list[str] = []
    for spec in TOPIC_SPECS.values():
        if spec.direction is not Direction.EDGE_TO_HUB:
            continue
        if group is None or spec.retained:
            filters.append(subscription(spec.kind, site=site))
        else:
            filters.append(shared_subscription(group, spec.kind, site=site))
    return filters


def edge_subscriptions(device_id: str, *, site: str | None = None) -> list[str]:
    """The topics an edge subscribes to: the hub-to-edge kinds addressed to it."""
    return [
        topic_name(spec.kind, device_id, site=site)
        for spec in TOPIC_SPECS.values()
        if spec.direction is Direction.HUB_TO_EDGE
    ]


def matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT subscription filter matches a topic name (``$share/<group>/`` ignored).

    Follows MQTT's rules: ``+`` matches one level, a trailing ``#`` matches the parent level and
    everything below it, and wildcards at the first level do not match ``$``-topics.
    """
    if topic_filter.startswith(SHARE_PREFIX + "/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3:
            raise TopicError(f"shared subscription {_show(topic_filter)} has no filter")
        topic_filter = parts[2]
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return index == len(filter_levels) - 1
        if index >= len(topic_levels):
            return False
        if level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)
