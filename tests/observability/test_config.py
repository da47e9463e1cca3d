"""The ``log_format`` key and the ``[tracing]`` section of the edge's and the hub's configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from waferscope.edge.config_loader import ConfigError as EdgeConfigError
from waferscope.edge.config_loader import load_config as load_edge
from waferscope.hub.config_loader import ConfigError as HubConfigError
from waferscope.hub.config_loader import load_config as load_hub


def edge_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f'device_id = "edge-07"\n{text}', encoding="utf-8")
    return path


def hub_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_text_logs_and_no_tracing(tmp_path: Path) -> None:
    edge = load_edge(edge_file(tmp_path), environ={}).config
    hub = load_hub(hub_file(tmp_path), environ={}).config
    for cfg in (edge, hub):
        assert cfg.log_format == "text"
        assert cfg.tracing.enabled is False
        assert cfg.tracing.otlp_endpoint == "http://localhost:4318"
        assert cfg.tracing.sample_ratio == 1.0
    assert edge.tracing.service_name == "waferscope-edge"
    assert hub.tracing.service_name == "waferscope-hub"


def test_file_settings(tmp_path: Path) -> None:
    section = """[tracing]
enabled = true
otlp_endpoint = "https://collector.fab3.example:4318"
otlp_headers = {authorization = "Bearer x"}
sample_ratio = 0.25
"""
    edge = load_edge(edge_file(tmp_path, 'log_format = "json"\n' + section), environ={}).config
    hub = load_hub(hub_file(tmp_path, 'log_format = "json"\n' + section), environ={}).config
    for cfg in (edge, hub):
        assert cfg.log_format == "json"
        assert cfg.tracing.enabled
        assert cfg.tracing.otlp_headers == {"authorization": "Bearer x"}
        assert cfg.tracing.sample_ratio == 0.25


def test_environment_overrides(tmp_path: Path) -> None:
    edge = load_edge(
        edge_file(tmp_path),
        environ={
            "WAFERSCOPE_EDGE__LOG_FORMAT": "json",
            "WAFERSCOPE_EDGE__TRACING__ENABLED": "true",
            "WAFERSCOPE_EDGE__TRACING__OTLP_ENDPOINT": "http://127.0.0.1:14318",
        },
    )
    assert edge.config.log_format == "json"
    assert edge.config.tracing.enabled
    assert edge.config.tracing.otlp_endpoint == "http://127.0.0.1:14318"
    hub = load_hub(
        None,
        environ={
            "WAFERSCOPE_HUB__LOG_FORMAT": "json",
            "WAFERSCOPE_HUB__TRACING__SAMPLE_RATIO": "0.5",
        },
    )
    assert hub.config.log_format == "json"
    assert hub.config.tracing.sample_ratio == 0.5


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('log_format = "xml"\n', "log_format"),
        ("[tracing]\nsample_ratio = 1.5\n", "tracing.sample_ratio"),
        ('[tracing]\notlp_endpoint = "collector:4317"\n', "tracing.otlp_endpoint"),
        ('[tracing]\nexporter = "jaeger"\n', "tracing.exporter"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(EdgeConfigError) as edge_err:
        load_edge(edge_file(tmp_path, text), environ={})
    assert any(p.field == field for p in edge_err.value.problems), edge_err.value
    with pytest.raises(HubConfigError) as hub_err:
        load_hub(hub_file(tmp_path, text), environ={})
    assert field in str(hub_err.value)


def test_a_bad_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError) as err:
        load_edge(edge_file(tmp_path), environ={"WAFERSCOPE_EDGE__LOG_FORMAT": "yaml"})
    assert "WAFERSCOPE_EDGE__LOG_FORMAT: log_format:" in str(err.value)
