"""A default-style (smoke) run opens no network connection: every connect() is traced."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import NETWORK_TRACE, SUMMARY_LINES

# connect(fd, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("1.2.3.4")}, 16)
INET_CONNECT = re.compile(r"connect\(\d+, \{sa_family=AF_INET6?,.*?(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")")


def network_connects(trace: str) -> list[str]:
    """Addresses of every IPv4/IPv6 connect() in an strace log, loopback excluded."""
    addresses = []
    for match in INET_CONNECT.finditer(trace):
        address = match.group(1) or match.group(2)
        if not (address.startswith("127.") or address == "::1"):
            addresses.append(address)
    return addresses


def test_parser_sees_a_real_connect() -> None:
    line = 'connect(5, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("18.1.2.3")}, 16) = -1 ENETUNREACH'
    local = 'connect(5, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}, 16) = 0'
    assert network_connects(line + "\n" + local) == ["18.1.2.3"]


def test_smoke_run_opens_no_network_connection(smoke_run: Path) -> None:
    trace_file = smoke_run / NETWORK_TRACE
    if not trace_file.exists():
        pytest.skip("strace is not installed: the connect() trace was not recorded")
    trace = trace_file.read_text()
    assert "+++ exited with 0 +++" in trace or "exited with 0" in trace
    assert network_connects(trace) == []
    calls = trace.count(" connect(")
    SUMMARY_LINES.append(f"offline: smoke run traced with strace, {calls} connect() calls, none off loopback")
