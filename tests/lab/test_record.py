"""The recorder of pcaps/lab/ (record.py) against the committed captures:
its scenarios are the MANIFEST's, its analysis gives the committed
REWRITES (no root); and, as root, one scenario recorded again gives the
same MANIFEST line and the same rewrite (kind, travel, length change)."""

import os

import pytest

from . import record

COMMITTED = record.OUT


def data_lines(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip() and not line.startswith("#")]


def test_the_scenarios_are_the_committed_manifests():
    manifest = data_lines(os.path.join(COMMITTED, "MANIFEST"))
    assert [row[0] for row in manifest] == [s.name for s in record.SCENARIOS]
    for row, s in zip(manifest, record.SCENARIOS):
        assert row[1:8] == [s.topology, s.family, s.mode, s.client, s.server, s.op, s.nat_args], row[0]
        for _, suffix in s.captures:
            assert os.path.exists(os.path.join(COMMITTED, f"{s.name}.{suffix}.pcap")), (s.name, suffix)


def linked_copy(tmp_path, names):
    """MANIFEST lines of names, and their captures linked, in tmp_path."""
    with open(os.path.join(COMMITTED, "MANIFEST")) as f:
        lines = [line for line in f if line.split("\t")[0] in names]
    (tmp_path / "MANIFEST").write_text("".join(lines))
    for name in names:
        for suffix in ("inside", "outside", "outside2"):
            src = os.path.join(COMMITTED, f"{name}.{suffix}.pcap")
            if os.path.exists(src):
                os.symlink(src, tmp_path / f"{name}.{suffix}.pcap")


def test_the_analysis_gives_the_committed_rewrites(tmp_path):
    linked_copy(tmp_path, [s.name for s in record.SCENARIOS])
    assert record.analyse(str(tmp_path)) == 0
    assert data_lines(tmp_path / "REWRITES") == data_lines(os.path.join(COMMITTED, "REWRITES"))


def test_a_line_seen_on_one_side_only_is_a_mismatch(tmp_path):
    name = "snat-v4-port-curl-vsftpd-download"
    linked_copy(tmp_path, [name])
    os.unlink(tmp_path / f"{name}.outside.pcap")
    assert record.analyse(str(tmp_path)) == 1
    assert data_lines(tmp_path / "REWRITES") == [[name, "PORT", "in->out", "PORT 192,0,2,10,136,111", "-", ""]]


def test_recording_a_scenario_again_gives_the_committed_answer(request, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces")
    name = "snat-v4-port-curl-vsftpd-download"
    # A prefix of its own: the e2e suite's lab may still be up.
    prefix = request.config.getoption("--lab-prefix") + "rec-"
    failures = record.record(prefix, str(tmp_path), only=f"^{name}$")
    assert failures == 0, f"recording {name} failed (its client's transcript is above, on stderr)"
    assert data_lines(tmp_path / "MANIFEST") == [row for row in data_lines(os.path.join(COMMITTED, "MANIFEST"))
                                                 if row[0] == name]
    kinds = lambda rows: [(r[0], r[1], r[2], r[5]) for r in rows if r[0] == name]  # noqa: E731
    assert kinds(data_lines(tmp_path / "REWRITES")) == kinds(data_lines(os.path.join(COMMITTED, "REWRITES")))
