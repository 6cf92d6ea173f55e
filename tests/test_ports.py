"""Ports for the brokers the simulator and the tests start: outside the range outgoing connections draw from."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mqttbridge.simulator import ports


def test_ports_lie_outside_the_kernels_ephemeral_range_are_free_and_never_handed_out_twice() -> None:
    low, high = ports.ephemeral_range()
    given = [ports.free_port() for _ in range(50)]
    assert len(set(given)) == 50
    for port in given:
        assert not low <= port <= high, f"{port} lies in the ephemeral range {low}-{high}"
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))  # raises if anything had it


def test_a_port_someone_listens_on_is_never_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr(ports, "quiet_ranges", lambda low, high: [range(busy, busy + 1)])
        port = ports.free_port()  # the only quiet port is taken: the kernel's answer instead
        assert port != busy
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_the_range_is_read_from_the_kernel_with_linuxs_default_where_it_cannot_be(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("20000\t50000\n")
    assert ports.ephemeral_range(tmp_path / "range") == (20000, 50000)
    assert ports.ephemeral_range(tmp_path / "missing") == (32768, 60999)
    (tmp_path / "garbled").write_text("twenty\n")
    assert ports.ephemeral_range(tmp_path / "garbled") == (32768, 60999)


def test_quiet_ranges_skip_the_ephemeral_range_and_the_well_known_ports() -> None:
    assert ports.quiet_ranges(32768, 60999) == [range(10000, 32768), range(61000, 65536)]
    assert ports.quiet_ranges(1024, 65535) == []  # everything ephemeral: only the kernel can answer
    assert ports.quiet_ranges(10050, 65500) == []  # too narrow either side to be worth drawing from
