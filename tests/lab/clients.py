"""FTP clients for the lab: curl, lftp and tests/e2e/ftpc.py (Python's
ftplib, every data-connection mode on request, and FXP), one session each,
run in the client's namespace with a transcript of what they said.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass

from .proc import in_ns
from .servers import SERVED, SIZES, sha256, stream

FTPC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "ftpc.py")
MODE_COMMAND = {"port": "PORT", "eprt": "EPRT", "pasv": "PASV", "epsv": "EPSV"}
# curl -v "< 230", lftp -d "<--- 230", ftplib "*resp* '230".
LOGIN = re.compile(r"^(< |<--- |\*resp\* ')230[ -]", re.M)
# curl -v "> PORT", lftp -d "---> PORT", ftplib "*cmd* 'PORT".
SENT_MODE = re.compile(r"(?:^> |---> |\*cmd\* ')(PORT|EPRT|PASV|EPSV)\b", re.M)


@dataclass(frozen=True)
class Step:
    """One operation of a session, with its files: ls (local: the listing),
    get (remote, local), put (local, remote), idle (seconds), chat (kib:
    plain commands, python only), fxp (remote on server A, remote on server
    B)."""
    kind: str
    local: str = ""
    remote: str = ""
    seconds: int = 0
    kib: int = 0

    @property
    def transfers(self):
        return 0 if self.kind in ("idle", "chat") else 1


class Uploads:
    """Upload sources, made once a run: deterministic, and unlike the served
    files (an upload that comes back as a served file would show)."""

    def __init__(self, workdir):
        self.workdir = workdir

    def path(self, size):
        path = os.path.join(self.workdir, f"up-{size}.bin")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(stream(b"ftpct-e2e upload", SIZES[size]))
            os.chmod(path, 0o644)
        return path


def plan(ops, case_dir, upload_prefix, uploads):
    """The steps of ops (the matrix's operations) for one run."""
    steps = []
    for n, op in enumerate(ops, 1):
        kind, _, arg = op.partition(":")
        if kind == "ls":
            steps.append(Step("ls", local=os.path.join(case_dir, f"ls-{n}.txt")))
        elif kind == "get":
            steps.append(Step("get", local=os.path.join(case_dir, f"get-{n}-{arg}.bin"), remote=SERVED[arg]))
        elif kind == "put":
            steps.append(Step("put", local=uploads.path(arg), remote=f"upload/{upload_prefix}-{n}-{arg}.bin"))
        elif kind == "idle":
            steps.append(Step("idle", seconds=int(arg)))
        elif kind == "chat":
            steps.append(Step("chat", kib=int(arg)))
        elif kind == "fxp":
            steps.append(Step("fxp", local=SERVED["1k"], remote=f"upload/{upload_prefix}-fxp.bin"))
    return steps


# --- command lines ----------------------------------------------------------

def url_host(addr):
    return f"[{addr}]" if ":" in addr else addr


def curl_argv(target, mode, steps, timeout):
    url = f"ftp://{url_host(target)}"
    base = ["-gsSv", "-m", str(timeout)]
    base += {"port": ["-P", "-", "--disable-eprt"], "eprt": ["-P", "-"],
             "pasv": ["--disable-epsv", "--no-ftp-skip-pasv-ip"], "epsv": []}[mode]
    argv = ["curl"]
    for i, step in enumerate(steps):
        argv += (["--next"] if i else []) + base
        argv += {"ls": ["-o", step.local, f"{url}/"],
                 "get": ["-o", step.local, f"{url}/{step.remote}"],
                 "put": ["-T", step.local, f"{url}/{step.remote}"]}[step.kind]
    return argv


def lftp_argv(target, mode, steps):
    script = ["set ftp:ssl-allow no", "set net:max-retries 1", "set net:timeout 10",
              "set net:reconnect-interval-base 1", "set cmd:fail-exit yes", "set xfer:clobber yes"]
    script += {"port": ["set ftp:passive-mode off"], "eprt": ["set ftp:passive-mode off"],
               "pasv": ["set ftp:passive-mode on", "set ftp:prefer-epsv no"],
               "epsv": ["set ftp:passive-mode on", "set ftp:prefer-epsv yes"]}[mode]
    for step in steps:
        script.append({"ls": f"ls > {step.local}", "get": f"get {step.remote} -o {step.local}",
                       "put": f"put {step.local} -o {step.remote}", "idle": f"sleep {step.seconds}"}[step.kind])
    return ["lftp", "-d", "-e", "; ".join(script + ["bye"]), f"ftp://{url_host(target)}"]


def python_argv(target, mode, steps):
    argv = [sys.executable, "-u", FTPC, "session", mode, target]
    for step in steps:
        argv += {"ls": ["ls", step.local], "get": ["get", step.remote, step.local],
                 "put": ["put", step.local, step.remote], "idle": ["idle", str(step.seconds)],
                 "chat": ["chat", str(step.kib)]}[step.kind]
    return argv


def fxp_argv(server_a, server_b, steps):
    return [sys.executable, "-u", FTPC, "fxp", server_a, server_b, steps[0].local, steps[0].remote]


def client_argv(case, topology, steps, timeout):
    if case.mode == "fxp":
        return fxp_argv(topology.server_addr(case.family, "srv"), topology.server_addr(case.family, "srv2"), steps)
    target = topology.target(case.family)
    if case.client == "curl":
        return curl_argv(target, case.mode, steps, timeout)
    if case.client == "lftp":
        return lftp_argv(target, case.mode, steps)
    return python_argv(target, case.mode, steps)


def run_client(ns, argv, timeout, transcript):
    """Runs argv in ns, its output after its command line in transcript;
    its exit status (124 when it was stopped after timeout seconds)."""
    with open(transcript, "w") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(in_ns(ns, argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            return 124
        finally:
            stop_group(proc)  # a child it left behind (lftp's) goes too


def stop_group(proc):
    """SIGTERM, then SIGKILL after 2 s, to the client's process group."""
    for sig, wait in ((signal.SIGTERM, 2), (signal.SIGKILL, 2)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass


# --- what the client did ------------------------------------------------------

def logged_in(transcript_text):
    return bool(LOGIN.search(transcript_text))


def sent_modes(transcript_text):
    return sorted(set(SENT_MODE.findall(transcript_text)))


def mode_problems(case, transcript_text):
    """The client asked for its data connections in its mode, and no other."""
    want = MODE_COMMAND.get(case.mode)
    if want is None:
        return []
    if (case.client, case.family, want) == ("lftp", "v6", "PORT"):
        want = "EPRT"  # lftp's active mode is EPRT over IPv6
    got = sent_modes(transcript_text)
    return [] if got == [want] else [f"mode: client sent {' '.join(got) or 'nothing'}, expected {want} only"]


def step_problems(steps, files):
    """Each step's result is where it should be, with the right SHA-256."""
    problems = []
    for step in steps:
        if step.kind == "ls":
            if not contains(step.local, "1k.bin"):
                problems.append("LIST: no listing")
        elif step.kind == "get":
            if not same_file(step.local, files.served_sha(step.remote)):
                problems.append(f"RETR {step.remote}: missing or SHA-256 differs")
        elif step.kind == "put":
            if not same_file(os.path.join(files.anon, step.remote), sha256(step.local)):
                problems.append(f"STOR {step.remote}: missing or SHA-256 differs on the server")
        elif step.kind == "fxp":
            if not same_file(os.path.join(files.anon, step.remote), files.served_sha(step.local)):
                problems.append(f"FXP: {step.remote} did not arrive on server B")
    return problems


def contains(path, text):
    try:
        with open(path, errors="replace") as f:
            return text in f.read()
    except FileNotFoundError:
        return False


def same_file(path, want_sha):
    return os.path.isfile(path) and sha256(path) == want_sha
