"""The configuration kernel on its own: a small model read from TOML, YAML and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from waferscope.protocols.settings import (
    ClientTlsSection,
    ConfigError,
    ConfigLoader,
    Section,
    TracingSection,
)
from waferscope.protocols.settings.reference import section_markdown


class Hook(Section):
    url: str = Field(description="Where to send.")


class Link(Section):
    """The link."""

    port: int = Field(default=1883, ge=1, le=65535, description="Port.")
    tls: ClientTlsSection = Field(default=ClientTlsSection())


class Root(Section):
    name: str = Field(description="Required name.")
    link: Link = Field(default=Link())
    hooks: list[Hook] = Field(default_factory=list)
    tracing: TracingSection = Field(default=TracingSection())


LOADER = ConfigLoader(Root, "TEST_APP__")


def test_every_problem_is_named_with_its_line(tmp_path: Path) -> None:
    toml = tmp_path / "app.toml"
    toml.write_text('name = "a"\n\n[link]\nport = 0\ncolour = "red"\n')
    with pytest.raises(ConfigError) as caught:
        LOADER.load(toml, environ={})
    shown = sorted(str(p) for p in caught.value.problems)
    assert shown[0].startswith(f"{toml}:4: link.port: Input should be greater than or equal to 1")
    assert shown[1] == f"{toml}:5: link.colour: unknown key (not a setting of this section)"

    yaml_file = tmp_path / "app.yaml"
    yaml_file.write_text("link:\n  port: 8883\ntracing:\n  otlp_endpoint: ftp://x\n")
    with pytest.raises(ConfigError) as caught:
        LOADER.load(yaml_file, environ={})
    assert {(p.where, p.field) for p in caught.value.problems} == {
        (str(yaml_file), "name"),
        (f"{yaml_file}:4", "tracing.otlp_endpoint"),
    }


def test_environment_overrides_set_fields_and_add_list_items(tmp_path: Path) -> None:
    toml = tmp_path / "app.toml"
    toml.write_text('name = "a"\n[[hooks]]\nurl = "http://one"\n')
    env = {
        "TEST_APP__LINK__PORT": "8883",
        "test_app__link__tls__enabled": "true",
        "TEST_APP__HOOKS__1__URL": "http://two",
        "OTHER__NAME": "ignored",
    }
    loaded = LOADER.load(toml, environ=env)
    cfg = loaded.config
    assert cfg.link.port == 8883 and cfg.link.tls.enabled is True
    assert [h.url for h in cfg.hooks] == ["http://one", "http://two"]
    assert len(loaded.overrides) == 3
    with pytest.raises(ConfigError) as caught:
        LOADER.load(toml, environ={"TEST_APP__HOOKS__5__URL": "x"})
    assert str(caught.value) == "TEST_APP__HOOKS__5__URL: hooks.5.url: no such list item"
    with pytest.raises(ConfigError) as caught:
        LOADER.load(None, environ={"TEST_APP__LINK__PORT": "http"})
    assert {(p.where, p.field) for p in caught.value.problems} == {
        ("<defaults>", "name"),  # no file: defaults plus the environment
        ("TEST_APP__LINK__PORT", "link.port"),
    }


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        LOADER.load(tmp_path / "missing.toml", environ={})
    ini = tmp_path / "app.ini"
    ini.write_text("name=a\n")
    with pytest.raises(ConfigError, match="unknown config type"):
        LOADER.load(ini, environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "a"\n[link\n')
    with pytest.raises(ConfigError, match=rf"{bad}:2: not valid TOML"):
        LOADER.load(bad, environ={})


def test_the_reference_has_a_table_per_section() -> None:
    out: list[str] = []
    section_markdown(Root, "", out)
    text = "\n".join(out)
    assert "### `[link]`" in text and "### `[link.tls]`" in text and "### `[tracing]`" in text
    assert "| `port` | int | `1883` | Port. |" in text
    assert "| `name` | str | **required** | Required name. |" in text
    assert "| `ca_file` | path (optional) | empty |" in text
