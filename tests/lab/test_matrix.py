"""The matrix file itself, without a lab (no root needed): every line
reads, and the runs are the ones the end-to-end suite promises."""

import pytest

from . import cases
from .proc import LabError


def test_matrix_reads_and_names_are_unique():
    loaded = cases.load()
    assert loaded, "tests/e2e/matrix has no case"
    assert len({c.name for c in loaded}) == len(loaded)


def test_every_case_runs_under_ftpct_and_controls_under_kernel_and_none():
    loaded = cases.load()
    controls = [c for c in loaded if "ctl" in c.tags]
    assert all(c.runs_under("ftpct") for c in loaded)
    assert [c for c in loaded if c.runs_under("kernel")] == controls
    assert [c for c in loaded if c.runs_under("none")] == controls


@pytest.mark.parametrize("line, why", [
    ("snat v6 port curl vsftpd - ls", "IPv4 only"),
    ("snat v4 port curl vsftpd - idle:5", "curl cannot stay idle"),
    ("snat v4 eprt lftp vsftpd - ls", "lftp never sends EPRT over IPv4"),
    ("snat v4 fxp python vsftpd - fxp", "FXP is python's mode fxp"),
    ("snat v4 port curl vsftpd - get:2k", "bad operation"),
    ("snat v4 port curl proftpd - ls", "bad server"),
])
def test_a_line_that_makes_no_meaningful_case_is_refused(line, why):
    with pytest.raises(LabError, match=why):
        cases.check(cases.parse_line(line, 1))


def test_expected_results_per_gateway_mode():
    case = cases.parse_line("fxp v4 fxp python vsftpd ctl,deny fxp", 1)
    assert (case.expected("ftpct"), case.expected("kernel"), case.expected("none")) == ("fail", "fail", "fail")
    case = cases.parse_line("dnat v4 pasv curl vsftpd ctl ls", 1)
    assert (case.expected("ftpct"), case.expected("kernel"), case.expected("none")) == ("pass", "pass", "fail")
    assert case.needs_rewrite and case.name == "dnat-v4-pasv-curl-vsftpd"
