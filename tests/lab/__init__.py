"""The namespace lab as a pytest harness (FRRouting's topotests are the
model): a small library that builds the lab, and the suites as data.

  proc.py      running programs in a namespace, bounded waits, daemons
  topology.py  namespaces, veths, addresses, routes, NAT, the gateway's filter
  servers.py   vsftpd, pure-ftpd, pyftpdlib, proftpd, hostile.py's fake server; the files they serve
  gateway.py   the gateway's helper: none, kernel, ftpct, ftpct-queue-all
  clients.py   curl, lftp, tests/e2e/ftpc.py, and what their transcripts show
  cases.py     tests/e2e/matrix, the end-to-end cases as data
  e2e.py       one end-to-end run and its checks
  ha.py        the failover pair: two gateways, a switch, virtual addresses
  conntrackd.py  conntrackd on each gateway: configuration, start, commands
  failover.py  the failover cases as data, one gateway mode's run of them
  record.py    the captures of pcaps/lab/ recorded again, and their analysis
  bench.py     the gateway benchmarks: gateways and tests as data, the table
  soak.py      the soak: load, sampler, baseline, statistics, verdict, table
  hostile.py   the hostile-input cases as data, one run of a case and its checks
  conftest.py  the fixtures; test_*.py the suites
  __main__.py  `python3 -m lab up|down|status|env|helper|server|ha|bench|record-pcaps ...`, for a
               person and for scripts (scripts/lab.sh wraps it)

Run as root: /usr/bin/python3 -m pytest tests/lab (README, "Tests").
"""
