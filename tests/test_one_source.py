"""Lists that several places need live once: the places are generated from it or agree with it."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO
from tsdcls.common.variants import DCLS_VARIANTS


def test_dcls_variants_drive_schema_wildcard_and_conversion() -> None:
    from tsdcls.dcls import convert

    schema = yaml.safe_load((REPO / "workflow/schemas/dcls.schema.yaml").read_text())
    enums = [node["enum"] for node in _walk(schema) if isinstance(node, dict) and "enum" in node
             and "dense" in node["enum"]]
    assert enums and all(tuple(enum) == DCLS_VARIANTS for enum in enums), enums
    assert convert.VARIANTS is DCLS_VARIANTS
    rules = (REPO / "workflow/rules/dcls.smk").read_text()
    assert re.search(r'variant="\|"\.join\(DCLS_VARIANTS\)', rules), "wildcard constraint must come from DCLS_VARIANTS"


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def _dataclass_defaults(cls) -> dict:
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = dataclasses.asdict(f.default_factory()) if dataclasses.is_dataclass(
                f.default_factory) else f.default_factory()
    return out


def test_settings_dataclasses_hold_no_competing_defaults() -> None:
    """Defaults live in config.yaml (+ schema): a dataclass default that config.yaml also sets
    must equal it, so reading a section without that key cannot silently differ from a run."""
    from tsdcls.dcls.evaluate import EvaluateConfig
    from tsdcls.dcls.train import RepulsionConfig, TrainConfig
    from tsdcls.theory.real_attention import RealSettings
    from tsdcls.theory.synthetic import SyntheticSettings

    config = _config()
    sections = {TrainConfig: config["dcls"]["train"], RepulsionConfig: config["dcls"]["train"]["repulsion"],
                EvaluateConfig: config["dcls"]["evaluate"],
                SyntheticSettings: config["theory"]["synthetic"], RealSettings: config["theory"]["real_attention"]}
    conflicts = []
    for cls, section in sections.items():
        for name, default in _dataclass_defaults(cls).items():
            if name in section and not isinstance(section[name], dict):
                value = tuple(section[name]) if isinstance(default, tuple) else section[name]
                if value != default:
                    conflicts.append(f"{cls.__name__}.{name}: dataclass {default!r} vs config.yaml {section[name]!r}")
    assert not conflicts, "; ".join(conflicts)
