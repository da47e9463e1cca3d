"""The MQTT topic module: every builder, parse round trips, hostile ids, subscriptions."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waferscope.protocols import topics
from waferscope.protocols.errors import TopicError, WaferscopeError
from waferscope.protocols.topics import TopicAddress, TopicKind

BUILDERS = {
    TopicKind.RESULT: topics.result_topic,
    TopicKind.ALERT: topics.alert_topic,
    TopicKind.STATUS: topics.status_topic,
    TopicKind.BIRTH: topics.birth_topic,
    TopicKind.DEPLOY: topics.deploy_topic,
    TopicKind.DEPLOY_ACK: topics.deploy_ack_topic,
    TopicKind.SHADOW_REPORT: topics.shadow_report_topic,
    TopicKind.LABEL: topics.label_topic,
}

ID_ALPHABET = string.ascii_letters + string.digits + "._-"
valid_ids = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=1).flatmap(
    lambda first: st.text(alphabet=ID_ALPHABET, max_size=topics.MAX_ID_LENGTH - 1).map(
        lambda rest: first + rest
    )
)


@pytest.mark.parametrize("kind", list(TopicKind))
def test_every_kind_has_a_builder_and_a_spec(kind: TopicKind) -> None:
    assert kind in BUILDERS
    assert topics.TOPIC_SPECS[kind].kind is kind


@pytest.mark.parametrize(("kind", "builder"), list(BUILDERS.items()))
def test_builders_without_site(kind: TopicKind, builder: object) -> None:
    assert callable(builder)
    name = builder("edge-01")
    assert name == f"waferscope/v1/_/edge-01/{kind.value}"
    assert topics.parse(name) == TopicAddress(kind, None, "edge-01")


@pytest.mark.parametrize(("kind", "builder"), list(BUILDERS.items()))
def test_builders_with_site(kind: TopicKind, builder: object) -> None:
    assert callable(builder)
    name = builder("edge-01", site="fab3.test-floor")
    assert name == f"waferscope/v1/fab3.test-floor/edge-01/{kind.value}"
    kind_back, site, device_id = topics.parse(name)
    assert (kind_back, site, device_id) == (kind, "fab3.test-floor", "edge-01")


def test_topic_name_accepts_kind_strings_and_refuses_unknown_ones() -> None:
    assert topics.topic_name("deploy-ack", "E1") == "waferscope/v1/_/E1/deploy-ack"
    with pytest.raises(TopicError, match="unknown topic kind"):
        topics.topic_name("results", "E1")


def test_address_topic_round_trip() -> None:
    address = TopicAddress(TopicKind.ALERT, "site-a", "edge-7")
    assert topics.parse(address.topic) == address
    assert address.spec.message == "Alert"


def test_only_status_is_retained_and_it_is_the_last_will_topic() -> None:
    retained = [kind for kind in TopicKind if topics.is_retained(kind)]
    assert retained == [TopicKind.STATUS]
    assert topics.LAST_WILL_KIND is TopicKind.STATUS
    assert topics.last_will_topic("edge-01", site="s1") == topics.status_topic("edge-01", site="s1")
    assert all(topics.qos(kind) == 1 for kind in TopicKind)


def test_directions() -> None:
    hub_to_edge = {
        k
        for k, spec in topics.TOPIC_SPECS.items()
        if spec.direction is topics.Direction.HUB_TO_EDGE
    }
    assert hub_to_edge == {TopicKind.DEPLOY, TopicKind.LABEL}


# --------------------------------------------------------------------------- hostile ids

HOSTILE_IDS = [
    "",
    "a/b",
    "/",
    "edge+1",
    "+",
    "edge#",
    "#",
    "$SYS",
    "$share",
    "edge\x00",
    "\x00",
    "x" * (topics.MAX_ID_LENGTH + 1),
    "_",
    "-edge",
    ".edge",
    "edge 01",
    "edge\n01",
    "edge\t",
    "édge",
    "edge\u200b",
    "..",
]


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_hostile_device_ids_are_refused_by_every_builder(bad: str) -> None:
    for builder in BUILDERS.values():
        with pytest.raises(TopicError):
            builder(bad)


@pytest.mark.parametrize("bad", [b for b in HOSTILE_IDS if b != "_"])
def test_hostile_sites_are_refused(bad: str) -> None:
    with pytest.raises(TopicError, match="site"):
        topics.result_topic("edge-01", site=bad)


@pytest.mark.parametrize("bad", [None, 12, b"edge"])
def test_non_string_ids_are_refused(bad: object) -> None:
    with pytest.raises(TopicError, match="must be a string"):
        topics.validate_id(bad)


def test_error_messages_say_what_is_wrong() -> None:
    with pytest.raises(TopicError, match="level separator"):
        topics.validate_id("a/b")
    with pytest.raises(TopicError, match="single-level wildcard"):
        topics.validate_id("a+b")
    with pytest.raises(TopicError, match="multi-level wildcard"):
        topics.validate_id("a#b")
    with pytest.raises(TopicError, match="NUL"):
        topics.validate_id("a\x00b")
    with pytest.raises(TopicError, match=r"starts with '\$'"):
        topics.validate_id("$edge")
    with pytest.raises(TopicError, match="longer than 64"):
        topics.validate_id("e" * 65)
    with pytest.raises(TopicError, match="is empty"):
        topics.validate_id("")
    with pytest.raises(TopicError, match="subscription group"):
        topics.shared_subscription("a/b", TopicKind.RESULT)


def test_topic_error_is_a_waferscope_error_and_a_value_error() -> None:
    with pytest.raises(WaferscopeError):
        topics.validate_id("")
    with pytest.raises(ValueError, match="empty"):
        topics.validate_id("")


def test_longest_id_is_accepted() -> None:
    longest = "e" * topics.MAX_ID_LENGTH
    assert topics.parse(topics.result_topic(longest)).device_id == longest


# --------------------------------------------------------------------------- parse


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "waferscope/v1/_/edge-01",
        "waferscope/v1/_/edge-01/result/extra",
        "waferscope/v2/_/edge-01/result",
        "other/v1/_/edge-01/result",
        "/waferscope/v1/_/edge-01/result",
        "waferscope/v1/_/edge-01/result/",
        "waferscope/v1/_/edge-01/results",
        "waferscope/v1/+/edge-01/result",
        "waferscope/v1/_/+/result",
        "waferscope/v1/#",
        "$share/ingest/waferscope/v1/_/edge-01/result",
        "$SYS/broker/uptime",
        "waferscope/v1/_/_/result",
        "waferscope/v1//edge-01/result",
        "waferscope/v1/_//result",
        "waferscope/v1/_/edge\x0001/result",
        "waferscope/v1/_/edge 01/result",
        "waferscope/v1/$site/edge-01/result",
    ],
)
def test_parse_refuses_what_is_not_a_waferscope_topic(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(bad)


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(TopicError, match="must be a string"):
        topics.parse(b"waferscope/v1/_/edge-01/result")  # type: ignore[arg-type]


@given(device_id=valid_ids, site=st.none() | valid_ids, kind=st.sampled_from(list(TopicKind)))
def test_build_then_parse_is_identity(device_id: str, site: str | None, kind: TopicKind) -> None:
    name = topics.topic_name(kind, device_id, site=site)
    assert topics.parse(name) == TopicAddress(kind, site, device_id)
    assert topics.parse(name).topic == name
    assert topics.matches(topics.subscription(kind), name)
    assert topics.matches(topics.subscription(device_id=device_id), name)


@given(value=st.text(max_size=80))
def test_validate_id_accepts_exactly_the_documented_alphabet(value: str) -> None:
    ok = (
        0 < len(value) <= topics.MAX_ID_LENGTH
        and value[0] in string.ascii_letters + string.digits
        and all(c in ID_ALPHABET for c in value)
    )
    if ok:
        assert topics.validate_id(value) == value
    else:
        with pytest.raises(TopicError):
            topics.validate_id(value)


# --------------------------------------------------------------------------- subscriptions


def test_subscription_filters() -> None:
    assert topics.subscription(TopicKind.RESULT) == "waferscope/v1/+/+/result"
    assert topics.subscription() == "waferscope/v1/+/+/#"
    assert topics.subscription(TopicKind.STATUS, site="fab3") == "waferscope/v1/fab3/+/status"
    assert topics.subscription(device_id="edge-01") == "waferscope/v1/+/edge-01/#"
    assert topics.subscription(TopicKind.ALERT, any_site=False) == "waferscope/v1/_/+/alert"


def test_shared_subscription() -> None:
    assert (
        topics.shared_subscription("ingest", TopicKind.RESULT)
        == "$share/ingest/waferscope/v1/+/+/result"
    )
    assert (
        topics.shared_subscription("ingest", site="fab3") == "$share/ingest/waferscope/v1/fab3/+/#"
    )


def test_hub_subscriptions_share_events_but_never_the_retained_status() -> None:
    plain = topics.hub_subscriptions()
    assert set(plain) == {
        "waferscope/v1/+/+/result",
        "waferscope/v1/+/+/alert",
        "waferscope/v1/+/+/status",
        "waferscope/v1/+/+/birth",
        "waferscope/v1/+/+/deploy-ack",
        "waferscope/v1/+/+/shadow-report",
    }
    shared = topics.hub_subscriptions(group="ingest")
    assert "waferscope/v1/+/+/status" in shared
    assert "$share/ingest/waferscope/v1/+/+/result" in shared
    assert not any(f.startswith("$share/") and f.endswith("/status") for f in shared)
    assert not any(f.endswith("/deploy") for f in shared)


def test_edge_subscribes_only_to_its_own_commands() -> None:
    assert topics.edge_subscriptions("edge-01", site="fab3") == [
        "waferscope/v1/fab3/edge-01/deploy",
        "waferscope/v1/fab3/edge-01/label",
    ]
    assert topics.qos(TopicKind.LABEL) == 1 and not topics.is_retained(TopicKind.LABEL)
    mine = topics.edge_subscriptions("edge-01")[0]
    assert not topics.matches(mine, topics.deploy_topic("edge-02"))


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("waferscope/v1/+/+/result", "waferscope/v1/_/e1/result", True),
        ("waferscope/v1/+/+/result", "waferscope/v1/_/e1/alert", False),
        ("waferscope/v1/+/+/#", "waferscope/v1/s/e1/deploy-ack", True),
        ("waferscope/v1/#", "waferscope/v1", True),
        ("waferscope/v1/s/+/status", "waferscope/v1/t/e1/status", False),
        ("$share/g/waferscope/v1/+/+/result", "waferscope/v1/_/e1/result", True),
        ("#", "$SYS/uptime", False),
        ("waferscope/v1/+/+", "waferscope/v1/_/e1/result", False),
    ],
)
def test_matches_follows_mqtt_rules(topic_filter: str, topic: str, expected: bool) -> None:
    assert topics.matches(topic_filter, topic) is expected


def test_every_hub_filter_matches_every_edge_to_hub_topic_and_no_command() -> None:
    filters = topics.hub_subscriptions(group="ingest")
    for kind, spec in topics.TOPIC_SPECS.items():
        name = topics.topic_name(kind, "edge-01", site="fab3")
        hit = any(topics.matches(f, name) for f in filters)
        assert hit is (spec.direction is topics.Direction.EDGE_TO_HUB)
