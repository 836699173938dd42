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
