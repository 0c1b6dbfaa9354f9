#!/usr/bin/env bash
# Hostile-input suite against the gateway, live in the namespace lab
# (scripts/lab.sh), each case under ftpct and under the kernel's own FTP
# helper (the control), each with a legitimate ftplib session beside it
# downloading 1k.bin again and again (SHA-256 checked; PORT through snat, so
# that ftpct rewrites beside the attack, PASV elsewhere) that must stay
# intact. In the *-fake cases the lab's server is replaced by the fake server
# of tests/abuse/hostile.py on port 21, which serves the legitimate session
# too (ftpct and the lab's FORWARD policy only know port 21); in the
# *-pyftpdlib and *-proftpd cases by those servers (Debian's
# python3-pyftpdlib through hostile.py pyftpd, anonymous and read-only;
# proftpd-core unpacked by scripts/install-deps.sh, anonymous, upload/
# writable), started by this script.
#
# Cases: 60, 53 attacks (14 of them over IPv6) and 7 legitimate transfers
# shaped back to back (tests/abuse/hostile.py does the hostile part; a
# listener on every port that must stay closed answers ABUSE-LISTENER-HIT,
# so a pass shows):
#   listing-{227,229}-{dnat,snat}-{vsftpd,pure-ftpd}
#       a file whose NAME holds "\r\n227 Entering Passive Mode (server,47227)"
#       (resp. "\r\n229 Entering Extended Passive Mode (|||47229|)"); the
#       client sends STAT on its directory (vsftpd: STAT DIR, pure-ftpd:
#       STAT DIR/*), so the server writes the name inside a multi-line 213
#       reply on the CONTROL channel; the client then connects to the port
#       as the line it received names it, and to the server's address.
#   fake-reply-cmd-dnat-vsftpd
#       the CLIENT sends "227 ..." and "229 ..." lines as commands.
#   unsolicited-{227,229}-dnat-fake (and the 229 over IPv6: -v6; likewise
#   listing-229-dnat-vsftpd-v6, multiline-229-segs-dnat-fake-v6 and
#   bounce-port25-eprt-snat-vsftpd-v6)
#       a fake server on port 21 answers SITE with a 227/229 no PASV/EPSV
#       asked for.
#   multiline-{227,229}-segs-dnat-fake
#       the listing trick from the fake server, each line of the multi-line
#       213 reply in a TCP segment of its own (a helper that reads segments,
#       like the kernel's, sees the 227/229 at the start of one).
#   bounce-port25-{port,eprt}-snat-vsftpd, bounce-3rd-{port,eprt}-fxp-vsftpd
#       PORT/EPRT naming port 25 of the client itself (probed from the server
#       at the gateway's public address) or a third party (203.0.113.30,
#       behind the gateway; the fxp topology's vsftpd is port_promiscuous).
#   portflood-{burst,seq}-snat-vsftpd
#       10,000 PORT commands in one burst (many a segment) or one by one on
#       one session; then NOOP and a real active RETR on the same session;
#       ftpct's RSS before/after.
#   longline-{client,server}-dnat-fake, garbage-{client,server}-...,
#   logflood-{client,server}-...
#       a 100 KB line, 64 KiB of binary garbage (NUL, bare CR, 0xFF IAC),
#       1,000 malformed PORT/EPRT (227/229 from the server) and 100 overlong
#       lines, from the client or from the fake server; a NOOP must still get
#       its 200, ftpct's log lines for that session are counted (at most
#       LOG_MAX: its logs must be rate-limited). vsftpd and pure-ftpd close
#       the session on a 100 KB line (500 Input line too long / 421 Line too
#       long): the long-line cases use the fake server.
#   b2b-*   legitimate transfers (hostile.py b2b) whose control traffic
#       leaves in segments sent back to back (TCP_NODELAY, one send() each,
#       no wait between; TCP_INFO checks that each write left as a segment of
#       its own, else the case is `broken`):
#       b2b-split-port-snat-vsftpd       "PO" | "RT 192,0,2,10,p1,p2\r\n", RETR
#       b2b-split-port-addr-snat-vsftpd  "PORT 192,0," | "2,10,p1,p2\r\n", RETR
#       b2b-port-retr-one-snat-vsftpd    "PORT ...\r\nRETR 1k.bin\r\n" in one
#       b2b-port-retr-two-snat-vsftpd    "PORT ...\r\n" | "RETR 1k.bin\r\n"
#       b2b-split-eprt-snat-vsftpd       IPv6: "EPRT |2|2001:db" |
#                                        "8:1::10|port|\r\n", RETR
#       b2b-227-more-dnat-fake           the client pipelines "PASV\r\nRETR
#           1k.bin\r\n"; the fake server's 227 and 150 leave back to back
#       b2b-split-227-dnat-fake          the fake server's 227 in two
#           segments back to back, cut inside the address
#       the client gets 1k.bin over the announced data connection.
#   echo-{dnat,snat}-{vsftpd,pure-ftpd,pyftpdlib,proftpd}[-v6] (16 cases)
#       pinholes through text the server echoes (hostile.py echo): one
#       session tries each command of the server whose reply echoes its
#       argument (ECHO_CMDS below), the argument holding a separator (lf,
#       cr, nul) and a forged "227 Entering Passive Mode (server,p1,p2)"
#       (IPv4; the server's own address) or "229 Entering Extended Passive
#       Mode (|||p|)", each attempt naming a port of its own (PECHO..), with
#       PASV (227) or EPSV (229) pipelined behind in the same write; the
#       kinds taken in turn, so each separator meets each kind; -v6: 229s
#       only. The client reads replies framed by CR LF and connects to the
#       REAL 227/229 for a RETR of 1k.bin (SHA-256) while the forged port is
#       probed, then sends PASV/EPSV alone and RETRs over its answer; every
#       forged port once more at the end. Echoes measured on
#       Debian 12 (the forged text intact, or how it came back):
#         pyftpdlib 1.5.7  SIZE, MDTM ("550 <path> is not retrievable"), TYPE
#                          ('504 Unsupported type "<arg>"'): LF, CR, NUL kept
#                          (a NUL in a path kills the session: TYPE only);
#                          RETR, CWD, DELE, RNFR, STAT echo nothing
#         proftpd 1.3.8    SIZE, MDTM, CWD, RETR, DELE, RNFR, RMD, STAT (450),
#                          MFMT ("550 <path>: No such file or directory"),
#                          MLST ("550 '<path>' cannot be listed"), MKD ('257
#                          "<path>" - Directory successfully created'): LF and
#                          CR kept, a NUL ends the argument; bad arguments of
#                          TYPE, MODE, STRU, REST, ALLO, SITE CHMOD come back
#                          with a space for LF or CR
#         vsftpd 3.0.3     MKD ('257 "<path>" created'), PWD after a CWD into
#                          it: CR kept, NUL read as LF and sent back as NUL,
#                          LF ends the command; every error reply is fixed text
#         pure-ftpd 1.0.50 CWD ("550 Can't change directory to <path>"), RETR
#                          ("550 Can't open <path>"), MKD, CWD into it, PWD,
#                          TYPE ("504-Unknown TYPE: <arg>"): CR and NUL come
#                          back as "_", LF ends the command
#   listend-227-dnat-{vsftpd,pure-ftpd,pyftpdlib,proftpd},
#   listend-229-dnat-vsftpd-v6
#       a file whose NAME holds "\r\n213 End\r\n227 Entering Passive Mode
#       (server,47240)" (proftpd: 212, its STAT code for a directory; the
#       229: "|||47241|"): STAT on its directory (pure-ftpd: DIR/*) with
#       PASV/EPSV pipelined behind; the name forges the end of the 213 block
#       and a single-line 227/229 after it, at a line start as the server
#       framed it. The real 227/229 comes after the real end of the block.
#   longopen-227-dnat-fake, longopen-229-dnat-fake-v6
#       the fake server answers SITE LONGOPEN with a multi-line reply whose
#       opener is "211-" and 1,100 bytes (over ftpct's line limit), a
#       227/229 naming 47410 inside the block, then the block's end, in one
#       write; PASV/EPSV pipelined behind gets the real one.
# Expected (the secure outcome, also printed for the kernel): no probe
# passes and no listener is reached, ftpct logs no expectation for the
# hostile session and logs a `refused [...]` line for it (all but the forged
# client lines, which are no announcement at all), the session still answers
# NOOP, the legitimate transfer is intact, ftpct is still running. For the
# b2b cases: the transfer works with the server's SHA-256, ftpct logs an
# expectation for the session and no refusal, and is still running. For the
# echo, listend and longopen cases: no forged port opens (probes, listeners,
# and ftpct logs no expectation on one); after each attempt, PASV/EPSV sent
# alone gets a 227/229 that works (RETR, SHA-256; under DNAT ftpct must
# rewrite it: the forged one must not make it refuse later ones); the real
# answer to the PASV/EPSV pipelined behind the attempt is information (the
# kernel's helper serves it; ftpct refuses it, `pipelined-passive`, since a
# reply before it may quote text that forges it); ftpct logs at most one
# expectation per real announcement, the session answers NOOP. Kernel
# results are information: the run fails only when an ftpct case differs.
#
# Usage: scripts/abuse-protocol.sh [--only REGEX] [--modes ftpct,kernel] [--keep] [--tsv FILE]
#   --only REGEX   cases whose name matches
#   --modes LIST   ftpct, kernel or both (default)
#   --keep         keep the work directory (logs, transcripts, results.tsv)
#   --tsv FILE     also copy results.tsv to FILE
# Results: a table on stdout and WORK/results.tsv (case, mode, expected,
# result, verdict, details). Needs root, the release build and the lab's
# packages. Namespaces ftpct-abp-* (FTPCT_ABUSE_LAB_PREFIX overrides).
# Environment: FTPCT_RULES_ARGS, words added after `ftpct rules --apply`
# and `ftpct rules --delete`; FTPCT_RUN_ARGS, words added after `ftpct run`
# (both empty by default; e.g. FTPCT_RULES_ARGS=--queue-all); FTPCT_BIN, the
# ftpct binary (default target/release/ftpct).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh
FTPCT=${FTPCT_BIN:-$REPO/target/release/ftpct}
HOSTILE=$REPO/tests/abuse/hostile.py
read -r -a RULES_ARGS <<<"${FTPCT_RULES_ARGS:-}" # words after `ftpct rules --apply|--delete`
read -r -a RUN_ARGS <<<"${FTPCT_RUN_ARGS:-}"     # words after `ftpct run`
export FTPCT_LAB_PREFIX=${FTPCT_ABUSE_LAB_PREFIX:-ftpct-abp-}
NS_CLI=${FTPCT_LAB_PREFIX}cli
NS_GW=${FTPCT_LAB_PREFIX}gw
NS_SRV=${FTPCT_LAB_PREFIX}srv
NS_SRV2=${FTPCT_LAB_PREFIX}srv2
LOG_MAX=100            # ftpct log lines one hostile session may cause
RSS_MAX_GROWTH_KB=65536 # ftpct's RSS growth allowed over a 10,000-PORT flood
P227=47227 P229=47229 PFAKE=47300 PUNSOL=47401 P3RD=47360 # listened-on ports
PEND227=47240 PEND229=47241 # the forged end of a listing: its 227 / 229
PLONG=47410            # the overlong opener's forged 227/229
PECHO=47500 NECHO=64   # the echo cases' forged ports: PECHO .. PECHO+NECHO-1
CASE_SECS=120          # hard limit on one hostile action
PROFTPD_DIR=${FTPCT_LAB_OPT:-/opt/ftpct-lab}/proftpd
PROFTPD=$PROFTPD_DIR/usr/sbin/proftpd
PROFTPD_LIBS=$PROFTPD_DIR/usr/lib/x86_64-linux-gnu
PYFTPDLIB_PYTHON=${FTPCT_PYFTPDLIB_PYTHON:-/usr/bin/python3} # Debian's, with python3-pyftpdlib

ONLY=''
MODES=ftpct,kernel
KEEP=0
TSV=''

log() { printf 'abuse: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while (($#)); do
        case $1 in
            --only) [[ $# -ge 2 ]] || usage; ONLY=$2; shift 2 ;;
            --modes) [[ $# -ge 2 ]] || usage; MODES=$2; shift 2 ;;
            --keep) KEEP=1; shift ;;
            --tsv) [[ $# -ge 2 ]] || usage; TSV=$2; shift 2 ;;
            -h | --help) usage ;;
            *) log "unknown argument '$1'"; usage ;;
        esac
    done
    check_modes ftpct kernel
}

# --- the cases ------------------------------------------------------------------
# The commands whose reply echoes the client's argument, per server, and the
# separators tried with each (measured: see the header).
declare -A ECHO_CMDS=(
    [pyftpdlib]="SIZE:lf,cr MDTM:lf,cr TYPE:lf,cr,nul"
    [vsftpd]="MKD:lf,cr,nul PWD:cr,nul"
    [pure-ftpd]="CWD:lf,cr,nul RETR:cr,nul MKD:cr,nul TYPE:nul"
    [proftpd]="SIZE:lf,cr MDTM:lf,nul CWD:cr RETR:lf DELE:cr RNFR:lf STAT:lf,cr MKD:lf,cr"
)
# How each server lists a directory on the control channel (STAT), and the
# code of that multi-line reply (the forged end must carry it).
declare -A STAT_FMT=([vsftpd]='STAT %s' [pure-ftpd]='STAT %s/*' [pyftpdlib]='STAT %s' [proftpd]='STAT %s')
declare -A STAT_CODE=([vsftpd]=213 [pure-ftpd]=213 [pyftpdlib]=213 [proftpd]=212)

# name  topology  server(vsftpd|pure-ftpd|pyftpdlib|proftpd|fake)  runner [args]
CASES=$(cat <<'EOF'
listing-227-dnat-vsftpd        dnat vsftpd    listing 227
listing-229-dnat-vsftpd        dnat vsftpd    listing 229
listing-229-dnat-vsftpd-v6     dnat vsftpd    listing 229 6
fake-reply-cmd-dnat-vsftpd     dnat vsftpd    fakecmd
listing-227-dnat-pure-ftpd     dnat pure-ftpd listing 227
listing-229-dnat-pure-ftpd     dnat pure-ftpd listing 229
unsolicited-227-dnat-fake      dnat fake      unsolicited 227
unsolicited-229-dnat-fake      dnat fake      unsolicited 229
unsolicited-229-dnat-fake-v6   dnat fake      unsolicited 229 6
multiline-227-segs-dnat-fake   dnat fake      multiline 227
multiline-229-segs-dnat-fake   dnat fake      multiline 229
multiline-229-segs-dnat-fake-v6 dnat fake     multiline 229 6
longline-client-dnat-fake      dnat fake      send longline 100000
longline-server-dnat-fake      dnat fake      srvsend LONGLINE 100000
garbage-server-dnat-fake       dnat fake      srvsend GARBAGE 65536
logflood-server-dnat-fake      dnat fake      srvsend FLOOD 1000
b2b-227-more-dnat-fake         dnat fake      b2b pasv-more
b2b-split-227-dnat-fake        dnat fake      b2b split-227
longopen-227-dnat-fake         dnat fake      longopen 227
longopen-229-dnat-fake-v6      dnat fake      longopen 229 6
echo-dnat-vsftpd               dnat vsftpd    echo 4
echo-dnat-vsftpd-v6            dnat vsftpd    echo 6
listend-227-dnat-vsftpd        dnat vsftpd    listend 227
listend-229-dnat-vsftpd-v6     dnat vsftpd    listend 229 6
echo-dnat-pure-ftpd            dnat pure-ftpd echo 4
echo-dnat-pure-ftpd-v6         dnat pure-ftpd echo 6
listend-227-dnat-pure-ftpd     dnat pure-ftpd listend 227
echo-dnat-pyftpdlib            dnat pyftpdlib echo 4
echo-dnat-pyftpdlib-v6         dnat pyftpdlib echo 6
listend-227-dnat-pyftpdlib     dnat pyftpdlib listend 227
echo-dnat-proftpd              dnat proftpd   echo 4
echo-dnat-proftpd-v6           dnat proftpd   echo 6
listend-227-dnat-proftpd       dnat proftpd   listend 227
listing-227-snat-vsftpd        snat vsftpd    listing 227
listing-229-snat-vsftpd        snat vsftpd    listing 229
bounce-port25-port-snat-vsftpd snat vsftpd    bounce port25 PORT
bounce-port25-eprt-snat-vsftpd snat vsftpd    bounce port25 EPRT
bounce-port25-eprt-snat-vsftpd-v6 snat vsftpd bounce port25 EPRT 6
portflood-burst-snat-vsftpd    snat vsftpd    portflood pipelined
portflood-seq-snat-vsftpd      snat vsftpd    portflood sequential
garbage-client-snat-vsftpd     snat vsftpd    send binary 65536
logflood-client-snat-vsftpd    snat vsftpd    send flood 1000
b2b-split-port-snat-vsftpd     snat vsftpd    b2b split-port-verb
b2b-split-port-addr-snat-vsftpd snat vsftpd   b2b split-port-addr
b2b-port-retr-one-snat-vsftpd  snat vsftpd    b2b port-retr-one
b2b-port-retr-two-snat-vsftpd  snat vsftpd    b2b port-retr-two
b2b-split-eprt-snat-vsftpd     snat vsftpd    b2b split-eprt 6
listing-227-snat-pure-ftpd     snat pure-ftpd listing 227
listing-229-snat-pure-ftpd     snat pure-ftpd listing 229
garbage-client-snat-pure-ftpd  snat pure-ftpd send binary 65536
echo-snat-vsftpd               snat vsftpd    echo 4
echo-snat-vsftpd-v6            snat vsftpd    echo 6
echo-snat-pure-ftpd            snat pure-ftpd echo 4
echo-snat-pure-ftpd-v6         snat pure-ftpd echo 6
echo-snat-pyftpdlib            snat pyftpdlib echo 4
echo-snat-pyftpdlib-v6         snat pyftpdlib echo 6
echo-snat-proftpd              snat proftpd   echo 4
echo-snat-proftpd-v6           snat proftpd   echo 6
bounce-3rd-port-fxp-vsftpd     fxp  vsftpd    bounce third PORT
bounce-3rd-eprt-fxp-vsftpd     fxp  vsftpd    bounce third EPRT
EOF
)

# --- state and clean-up -----------------------------------------------------------

WORK=''
FTPCT_PID='' FTPCT_LOG='' GW_MODE=''
LAB_TOPO='' LAB_SERVER=''
LISTEN_PIDS=() OWN_PID='' LEGIT_PID='' HOSTILE_PID=''

cleanup() {
    local rc=$? p
    trap - EXIT ERR
    trap '' INT TERM # a second Ctrl-C must not leave the lab half down
    [[ -n $HOSTILE_PID ]] && { kill "$HOSTILE_PID" 2>/dev/null || true; }
    [[ -n $LEGIT_PID ]] && { kill "$LEGIT_PID" 2>/dev/null || true; }
    ftpct_stop
    rules_delete
    own_server_stop
    for p in "${LISTEN_PIDS[@]}"; do stop_pid "$p" 10 || true; done
    [[ -n $LAB_TOPO ]] && { "$LAB" down >/dev/null 2>&1 || true; }
    drop_work
    exit "$rc"
}

gw() { ip netns exec "$NS_GW" "$@"; }
gw_up() { [[ -e /run/netns/$NS_GW ]]; }

rules_delete() {
    gw_up && [[ -x $FTPCT ]] || return 0
    gw "$FTPCT" rules --delete "${RULES_ARGS[@]}" >>"${WORK:-/tmp}/rules.log" 2>&1 ||
        log "warning: ftpct rules --delete failed"
}

ftpct_start() {
    FTPCT_LOG=$WORK/ftpct-$LAB_TOPO-$LAB_SERVER-$(date +%H%M%S%N).log
    ip netns exec "$NS_GW" "$FTPCT" run "${RUN_ARGS[@]}" </dev/null >"$FTPCT_LOG" 2>&1 &
    FTPCT_PID=$!
    wait_running
}

ftpct_stop() {
    [[ -n $FTPCT_PID ]] || return 0
    stop_pid "$FTPCT_PID" || log "warning: ftpct did not stop in 5 s: killed"
    FTPCT_PID=''
}

gw_mode() { # ftpct | kernel
    [[ $1 == "$GW_MODE" ]] && return 0
    ftpct_stop
    rules_delete
    "$LAB" helper off >/dev/null
    case $1 in
        kernel) "$LAB" helper on >/dev/null ;;
        ftpct)
            gw "$FTPCT" rules --apply "${RULES_ARGS[@]}" >>"$WORK/rules.log" 2>&1 ||
                die "ftpct rules --apply ${RULES_ARGS[*]} failed: $(tail -n 3 "$WORK/rules.log" | tr '\n' ' ')"
            ftpct_start
            ;;
    esac
    GW_MODE=$1
    flush_conntrack
}

# --- lab, listeners, fake server ----------------------------------------------------

listen_start() { # NS PORT...
    local ns=$1; shift
    local -a args=() p
    for p in "$@"; do args+=(--port "$p"); done
    ip netns exec "$ns" python3 "$HOSTILE" listen "${args[@]}" --log "$WORK/listen-$ns.log" --secs 900 \
        </dev/null >>"$WORK/listen-$ns.out" 2>&1 &
    LISTEN_PIDS+=($!)
}

listeners_stop() {
    local p
    for p in "${LISTEN_PIDS[@]}"; do stop_pid "$p" 10 || true; done
    LISTEN_PIDS=()
}

# The trick files: names with a CR LF and a 227/229 line naming the server.
make_tricks() {
    local anon=$FTPCT_LAB_ANON h
    h=${FTPCT_LAB_SRV4//./,}
    install -d -m 0755 "$anon/trick227" "$anon/trick229"
    : >"$anon/trick227/abuse"$'\r\n'"227 Entering Passive Mode ($h,$((P227 >> 8)),$((P227 & 255)))"
    : >"$anon/trick229/abuse"$'\r\n'"229 Entering Extended Passive Mode (|||$P229|)"
    # A forged end of the STAT block (its code: 213, proftpd 212), then a 227/229.
    local code
    for code in 212 213; do
        install -d -m 0755 "$anon/trickend$code-227" "$anon/trickend$code-229"
        : >"$anon/trickend$code-227/abuse"$'\r\n'"$code End"$'\r\n'"227 Entering Passive Mode ($h,$((PEND227 >> 8)),$((PEND227 & 255)))"
        : >"$anon/trickend$code-229/abuse"$'\r\n'"$code End"$'\r\n'"229 Entering Extended Passive Mode (|||$PEND229|)"
    done
}

lab_to() { # TOPO SERVER
    local topo=$1 server=$2 i
    if [[ $topo != "$LAB_TOPO" ]]; then
        ftpct_stop
        rules_delete
        own_server_stop
        listeners_stop
        log "lab up $topo"
        GW_MODE='' LAB_SERVER=''
        LAB_TOPO=$topo
        "$LAB" up "$topo" vsftpd >/dev/null 2>>"$WORK/lab.log" || die "lab up $topo failed (see $WORK/lab.log)"
        eval "$("$LAB" env)"
        LAB_SERVER=vsftpd
        make_tricks
        # shellcheck disable=SC2046 # a list of ports
        listen_start "$NS_SRV" "$P227" "$P229" "$PFAKE" "$PUNSOL" "$PEND227" "$PEND229" "$PLONG" \
            $(seq "$PECHO" $((PECHO + NECHO - 1)))
        listen_start "$NS_CLI" 25 "$PFAKE"
        [[ $topo == fxp ]] && listen_start "$NS_SRV2" "$P3RD"
    fi
    [[ $server == "$LAB_SERVER" ]] && return 0
    ftpct_stop # a new ftpct per server: its log and RSS per group
    GW_MODE=''
    own_server_stop
    log "server $server"
    case $server in
        vsftpd | pure-ftpd)
            "$LAB" server "$server" >/dev/null 2>>"$WORK/lab.log" || die "lab server $server failed"
            ;;
        *)
            "$LAB" server none >/dev/null 2>>"$WORK/lab.log"
            own_server_start "$server"
            ;;
    esac
    LAB_SERVER=$server
}

# proftpd's configuration: anonymous, serving the lab's anonymous root, its
# run files in DIR.
proftpd_conf() { # DIR
    cat <<EOF
# generated by scripts/abuse-protocol.sh
ServerName "ftpct lab proftpd"
ServerType standalone
DefaultServer on
Port 21
UseIPv6 on
User nobody
Group nogroup
Umask 022
MaxInstances 200
TimeoutIdle 120
AuthOrder mod_auth_unix.c
DelayTable none
WtmpLog off
UseReverseDNS off
ScoreboardFile $1/proftpd.scoreboard
PidFile $1/proftpd.pid
SystemLog $1/proftpd.log
TransferLog none
<Anonymous $FTPCT_LAB_ANON>
  User ftp
  Group $(id -gn ftp)
  UserAlias anonymous ftp
  RequireValidShell off
</Anonymous>
EOF
}

# The servers this script runs itself on port 21 of the server namespace:
# the fake one (tests/abuse/hostile.py), pyftpdlib, proftpd (unpacked by
# scripts/install-deps.sh).
own_server_start() { # fake|pyftpdlib|proftpd
    local i
    case $1 in
        fake)
            ip netns exec "$NS_SRV" python3 "$HOSTILE" fakeserver --root "$FTPCT_LAB_ANON" \
                --log "$WORK/fakeserver.log" --secs 900 </dev/null >>"$WORK/fakeserver.out" 2>&1 &
            ;;
        pyftpdlib)
            ip netns exec "$NS_SRV" "$PYFTPDLIB_PYTHON" "$HOSTILE" pyftpd --root "$FTPCT_LAB_ANON" \
                --log "$WORK/pyftpdlib.log" --secs 900 </dev/null >>"$WORK/pyftpdlib.out" 2>&1 &
            ;;
        proftpd)
            mkdir -p "$WORK/proftpd"
            proftpd_conf "$WORK/proftpd" >"$WORK/proftpd/proftpd.conf"
            LD_LIBRARY_PATH=$PROFTPD_LIBS ip netns exec "$NS_SRV" "$PROFTPD" -n -q -c "$WORK/proftpd/proftpd.conf" \
                </dev/null >>"$WORK/proftpd/proftpd.out" 2>&1 &
            ;;
        *) die "unknown server '$1'" ;;
    esac
    OWN_PID=$!
    for ((i = 0; i < 50; i++)); do
        ip netns exec "$NS_SRV" ss -ltnH 'sport = :21' | grep -q . && return 0
        kill -0 "$OWN_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 5 "$WORK"/*.out "$WORK/proftpd"/proftpd.* 2>/dev/null >&2 || true
    die "$1 did not start listening on port 21 in $NS_SRV"
}

# Stops it and the session processes it forked (proftpd), by id.
own_server_stop() {
    [[ -n $OWN_PID ]] || return 0
    local kids p
    kids=$(pgrep -P "$OWN_PID" 2>/dev/null || true)
    stop_pid "$OWN_PID" 20 || true
    for p in $kids; do stop_pid "$p" 10 || true; done
    OWN_PID=''
}

# --- the legitimate session beside each case -------------------------------------------

legit_mode() { case $LAB_TOPO in snat) echo port ;; *) echo pasv ;; esac; }

legit_start() { # DIR
    local dir=$1 sha i
    sha=$(awk '$2 == "1k.bin" { print $1 }' "$FTPCT_LAB_ANON/SHA256SUMS")
    rm -f "$dir/legit.ready" "$dir/legit.stop"
    ip netns exec "$NS_CLI" timeout -k 2 100 python3 "$HOSTILE" legit "$FTPCT_LAB_TARGET4" \
        --mode "$(legit_mode)" --file 1k.bin --sha "$sha" --ready "$dir/legit.ready" \
        --stop "$dir/legit.stop" --max-secs 90 </dev/null >"$dir/legit.log" 2>&1 &
    LEGIT_PID=$!
    for ((i = 0; i < 100; i++)); do
        [[ -e $dir/legit.ready ]] && return 0
        kill -0 "$LEGIT_PID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

legit_finish() { # DIR -> sets LEGIT (ok|FAIL) and LEGIT_WHY
    local dir=$1 rc=0
    : >"$dir/legit.stop"
    if [[ -n $LEGIT_PID ]]; then wait "$LEGIT_PID" || rc=$?; fi
    LEGIT_PID=''
    LEGIT_WHY=$(grep -E '^legit:' "$dir/legit.log" | tail -n1 || true)
    if ((rc == 0)) && [[ $LEGIT_WHY == *'SHA-256 ok'* ]]; then
        LEGIT=ok LEGIT_WHY=${LEGIT_WHY#legit: }
    else
        LEGIT=FAIL
        LEGIT_WHY="legit session failed (exit $rc): $(tail -n 2 "$dir/legit.log" | tr '\n\t' '  ')"
    fi
}

# --- checks ------------------------------------------------------------------------------

kv() { sed -n "s/.*[: ]$1=\([^ ]*\).*/\1/p" "$2" | tail -n1; }
# The hostile session's client address:port, as in ftpct's flow= field.
hostile_flow() { sed -n 's/^control \([^ ]*\) -> .*/\1/p' "$1" | head -n1; }
probes_line() { awk '/^probe / { printf "%s%s=%s", sep, $2, $3; sep=" " }' "$1"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
ipset_entries() { gw ipset list ftpct 2>/dev/null | sed -n 's/^Number of entries: //p'; }
# Packets the gateway could not forward for their size (DF set, above the MTU).
frag_fails() {
    # shellcheck disable=SC2016 # awk fields
    gw awk '/^Ip:/ { if (!h) { for (i = 1; i <= NF; i++) n[$i] = i; h = 1 } else print $n["FragFails"] }' /proc/net/snmp
}
# Connections the listeners accepted so far (all namespaces).
listener_hits() { cat "$WORK"/listen-*.log 2>/dev/null | grep -c '^hit ' || true; }

# ftpct's expectations for FLOW on a port that OUT's `forged ports:` line lists.
forged_expects() { # SLICE FLOW OUT
    local ports
    ports=$(sed -n 's/^forged ports: //p' "$3" | tr ',' '|')
    if [[ -z $ports || -z $2 ]]; then echo 0; return; fi
    grep -F "flow=$2 ->" "$1" | grep -F 'event="expect"' |
        sed -n 's/.* expect [^ ]* -> [^ ]*:\([0-9][0-9]*\) .*/\1/p' | grep -cxE "$ports" || true
}

# ftpct's log lines of the case for FLOW: $SLICE (whole), counts.
ftpct_counts() { # SLICE FLOW -> F_LINES F_EXPECT F_REFUSED F_REWRITE
    local f=$1 flow=$2
    if [[ -z $flow ]]; then F_LINES=0 F_EXPECT=0 F_REFUSED=0 F_REWRITE=0; return; fi
    F_LINES=$(grep -cF "flow=$flow ->" "$f" || true)
    F_EXPECT=$(grep -F "flow=$flow ->" "$f" | grep -c 'event="expect"' || true)
    F_REFUSED=$(grep -F "flow=$flow ->" "$f" | grep -c 'event="refused"' || true)
    F_REWRITE=$(grep -F "flow=$flow ->" "$f" | grep -c 'event="rewrite"' || true)
}

# --- the hostile actions ---------------------------------------------------------------------
# Each runner runs the hostile part in the client namespace, output in $OUT,
# and sets EXPECT (the secure outcome, words), NEED (what the ftpct log
# must show: noexpect | refused | bounded | expect) and may add to DETAILS.

# In the background and waited for, so that a signal is handled at once.
hostile() {
    local rc=0
    # $! is timeout itself (ip netns exec execs it), which passes a TERM on.
    ip netns exec "$NS_CLI" timeout -k 2 "$CASE_SECS" python3 -u "$HOSTILE" "$@" </dev/null >"$OUT" 2>&1 &
    HOSTILE_PID=$!
    wait "$HOSTILE_PID" || rc=$?
    HOSTILE_PID=''
    return "$rc"
}

# The lab's addresses of family ${1:-4} (4 or 6): TARGET (where the client
# connects), SRV, CLI, PUBLIC (the gateway's outside address), and
# hp HOST PORT, a probe's HOST:PORT ([v6]:PORT).
family_addrs() { # [4|6]
    if [[ ${1:-4} == 6 ]]; then
        TARGET=$FTPCT_LAB_TARGET6 SRV=$FTPCT_LAB_SRV6 CLI=$FTPCT_LAB_CLI6 PUBLIC=2001:db8:2::1
    else
        TARGET=$FTPCT_LAB_TARGET4 SRV=$FTPCT_LAB_SRV4 CLI=$FTPCT_LAB_CLI4 PUBLIC=198.51.100.1
    fi
}
hp() { if [[ $1 == *:* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi; }

run_listing() { # 227|229 [4|6]
    local kind=$1 cmd
    family_addrs "${2:-4}"
    if [[ $LAB_SERVER == pure-ftpd ]]; then cmd="STAT trick$kind/*"; else cmd="STAT trick$kind"; fi
    local port=$P227
    [[ $kind == 229 ]] && port=$P229
    EXPECT="closed, refused logged"
    NEED=refused
    hostile session "$TARGET" --cmd "$cmd" --want "^$kind Entering" --probe-announced \
        --probe "$(hp "$TARGET" "$port")" --probe "$(hp "$SRV" "$port")" --noop
}

run_fakecmd() {
    local h=${FTPCT_LAB_SRV4//./,}
    EXPECT="closed, no expect"
    NEED=noexpect
    hostile session "$FTPCT_LAB_TARGET4" \
        --cmd "227 Entering Passive Mode ($h,$((PFAKE >> 8)),$((PFAKE & 255)))" \
        --cmd "229 Entering Extended Passive Mode (|||$PFAKE|)" \
        --probe "$FTPCT_LAB_TARGET4:$PFAKE" --probe "$FTPCT_LAB_SRV4:$PFAKE" \
        --probe "$NS_SRV@$FTPCT_LAB_CLI4:$PFAKE" --noop
}

run_unsolicited() { # 227|229 [4|6]
    family_addrs "${2:-4}"
    EXPECT="closed, refused logged"
    NEED=refused
    hostile session "$TARGET" --cmd "SITE UNSOL$1 $PUNSOL" --want "^$1 Entering" \
        --probe-announced --probe "$(hp "$TARGET" "$PUNSOL")" --noop
}

# The listing trick again, from the fake server: each line of the 213
# reply in a TCP segment of its own (what a helper reading segments sees).
run_multiline() { # 227|229 [4|6]
    family_addrs "${2:-4}"
    EXPECT="closed, refused logged"
    NEED=refused
    hostile session "$TARGET" --cmd "SITE MULTI$1 $PUNSOL" --want "^$1 Entering" \
        --probe-announced --probe "$(hp "$TARGET" "$PUNSOL")" --noop
}

run_bounce() { # port25|third PORT|EPRT [4|6]
    local target port probe fam=${3:-4}
    family_addrs "$fam"
    if [[ $1 == port25 ]]; then
        target=$CLI port=25
        # The data connection would come from the server to the gateway's
        # public address (SNAT), mapped to the client's port 25.
        probe="$NS_SRV@$(hp "$PUBLIC" 25)"
    else
        target=$FTPCT_LAB_SRV2_4 port=$P3RD
        probe="$NS_SRV@$target:$port"
    fi
    local cmd
    if [[ $2 == PORT ]]; then
        cmd="PORT ${target//./,},$((port >> 8)),$((port & 255))"
    else
        cmd="EPRT |$((fam == 6 ? 2 : 1))|$target|$port|"
    fi
    EXPECT="closed, refused logged"
    NEED=refused
    hostile session "$TARGET" --cmd "$cmd" --probe "$probe" --probe "$NS_SRV@$(hp "$target" "$port")" --noop
}

run_portflood() { # pipelined|sequential
    local sha before after base=20000
    [[ $1 == sequential ]] && base=10000 # distinct ports: no state shared with the burst
    sha=$(awk '$2 == "1k.bin" { print $1 }' "$FTPCT_LAB_ANON/SHA256SUMS")
    EXPECT="NOOP 200, RETR ok, RSS bounded"
    NEED=bounded
    before=$( [[ -n $FTPCT_PID ]] && rss_kb "$FTPCT_PID" || echo 0)
    local rc=0
    hostile portflood "$FTPCT_LAB_TARGET4" --addr "$FTPCT_LAB_CLI4" --count 10000 "--$1" \
        --port-base "$base" --file 1k.bin --sha "$sha" --timeout 10 || rc=$?
    if [[ -n $FTPCT_PID ]]; then
        after=$(rss_kb "$FTPCT_PID")
        DETAILS+="ftpct RSS ${before} kB -> ${after} kB; ipset entries $(ipset_entries); "
        if ((after - before > RSS_MAX_GROWTH_KB)); then
            EXTRA_FAIL+="RSS grew by $((after - before)) kB; "
        fi
    fi
    return "$rc"
}

run_send() { # longline|binary|flood SIZE
    EXPECT="NOOP 200, log<=$LOG_MAX"
    NEED=bounded
    hostile send "$FTPCT_LAB_TARGET4" --payload "$1" --size "$2" --timeout 10
}

run_srvsend() { # LONGLINE|GARBAGE|FLOOD N
    EXPECT="NOOP 200, log<=$LOG_MAX"
    NEED=bounded
    hostile session "$FTPCT_LAB_TARGET4" --cmd "SITE $1 $2" --until '^200 abuse-done' --noop --timeout 10
}

# A legitimate transfer, its control traffic in segments back to back.
run_b2b() { # SHAPE [6]
    local sha target=$FTPCT_LAB_TARGET4
    [[ ${2:-} == 6 ]] && target=$FTPCT_LAB_TARGET6
    sha=$(awk '$2 == "1k.bin" { print $1 }' "$FTPCT_LAB_ANON/SHA256SUMS")
    EXPECT="file ok, expect logged"
    NEED=expect
    hostile b2b "$target" --shape "$1" --file 1k.bin --sha "$sha" --timeout 10
}

# Pinholes through text the server echoes (tests/abuse/hostile.py echo): one
# session, each attempt with a forged port of its own, PASV/EPSV pipelined
# behind, the real reply used for a RETR. Call family_addrs first.
echo_session() { # ARGS... (for hostile echo)
    local sha
    sha=$(awk '$2 == "1k.bin" { print $1 }' "$FTPCT_LAB_ANON/SHA256SUMS")
    EXPECT="forged closed, alone RETR ok"
    NEED=real
    hostile echo "$TARGET" --server-addr "$SRV" --port-base "$PECHO" --max-attempts "$NECHO" \
        --probe-host "$TARGET" --probe-host "$SRV" --file 1k.bin --sha "$sha" "$@"
}

# Every echoing command of the server (ECHO_CMDS) with each of its separators.
run_echo() { # [4|6]
    local fam=${1:-4} spec kinds=227,229
    local -a args=()
    family_addrs "$fam"
    [[ $fam == 6 ]] && kinds=229 # PASV is IPv4's
    for spec in ${ECHO_CMDS[$LAB_SERVER]}; do args+=(--echo "$spec"); done
    echo_session --kinds "$kinds" "${args[@]}"
}

# STAT on the directory whose file name forges the end of the listing's
# block, then a 227/229 (make_tricks); PASV/EPSV pipelined behind.
run_listend() { # 227|229 [4|6]
    local kind=$1 port=$PEND227 what
    family_addrs "${2:-4}"
    [[ $kind == 229 ]] && port=$PEND229
    # shellcheck disable=SC2059 # the format is the server's STAT_FMT
    what=$(printf "${STAT_FMT[$LAB_SERVER]}" "trickend${STAT_CODE[$LAB_SERVER]}-$kind")
    echo_session --raw "$kind:$port:$what"
}

# The fake server's overlong multi-line opener with a 227/229 inside.
run_longopen() { # 227|229 [4|6]
    family_addrs "${2:-4}"
    echo_session --raw "$1:$PLONG:SITE LONGOPEN$1 $PLONG"
}

# --- one case ----------------------------------------------------------------------------------

R_NAME=() R_MODE=() R_EXPECT=() R_RESULT=() R_VERDICT=() R_DETAILS=()

run_case() { # NAME MODE RUNNER ARGS...
    local name=$1 mode=$2 runner=$3; shift 3
    local dir=$WORK/cases/$name.$mode off=0 rc=0 slice='' flow result verdict problems=''
    mkdir -p "$dir"
    OUT=$dir/hostile.log DETAILS='' EXTRA_FAIL='' EXPECT='' NEED=''
    flush_conntrack
    [[ $mode == ftpct ]] && off=$(stat -c %s "$FTPCT_LOG")
    local hits0 frag0
    hits0=$(listener_hits)
    frag0=$(frag_fails)
    if ! legit_start "$dir"; then
        problems+="legit session did not start; "
    fi
    local t0=$SECONDS
    "run_$runner" "$@" || rc=$?
    legit_finish "$dir"
    [[ $LEGIT == ok ]] || problems+="$LEGIT_WHY; "
    flow=$(hostile_flow "$OUT")
    local hits=$(($(listener_hits) - hits0)) frag=$(($(frag_fails) - frag0))
    ((frag == 0)) || DETAILS+="the gateway dropped $frag packet(s) too big for the next hop (IpFragFails, gateway-wide); "
    ((hits == 0)) || problems+="the listeners behind the gateway were reached $hits time(s); "
    local opened probes
    opened=$(kv opened "$OUT")
    probes=$(probes_line "$OUT")
    # The observed outcome.
    if ((rc == 3)); then
        result=broken
        problems+="set-up failed: $(grep -E '^detail' "$OUT" | tail -n1 || true); "
    elif [[ -n $opened && $opened != 0 ]]; then
        result="OPEN($opened)"
    elif ((rc != 0)); then
        result=failed
        problems+="$(grep -E '^(detail|noop|summary)' "$OUT" | tail -n3 | tr '\n' ' ' || true); "
    else
        result=closed
        [[ $NEED == bounded ]] && result=usable
        [[ $NEED == expect ]] && result=file-ok
    fi
    [[ -n $EXTRA_FAIL ]] && problems+=$EXTRA_FAIL
    if [[ $mode == ftpct ]]; then
        sleep 0.2 # the last decisions reach the log
        slice=$dir/ftpct.log
        tail -c +$((off + 1)) "$FTPCT_LOG" | sed 's/\x1b\[[0-9;]*m//g' >"$slice"
        ftpct_counts "$slice" "$flow"
        DETAILS+="ftpct log for the session: $F_LINES line(s), expect=$F_EXPECT refused=$F_REFUSED rewrite=$F_REWRITE"
        DETAILS+=" ($(grep -c 'held back' "$slice" || true) 'held back' line(s) in the case's log); "
        local why
        why=$(grep -F "flow=$flow ->" "$slice" | sed -n 's/.* refused \[\([a-z0-9-]*\)\].*/\1/p' | sort | uniq -c |
            awk '{ printf "%s%s x%d", sep, $2, $1; sep = ", " }' || true)
        [[ -n $why ]] && DETAILS+="refusals: $why; "
        case $NEED in
            noexpect) ((F_EXPECT == 0)) || problems+="ftpct logged $F_EXPECT expectation(s) for it; " ;;
            refused)
                ((F_REFUSED >= 1)) || problems+="ftpct logged no refusal; "
                ((F_EXPECT == 0)) || problems+="ftpct logged $F_EXPECT expectation(s); "
                ;;
            expect)
                ((F_EXPECT >= 1)) || problems+="ftpct logged no expectation for it; "
                ((F_REFUSED == 0)) || problems+="ftpct logged $F_REFUSED refusal(s) for it; "
                ;;
            real) # one expectation per real announcement at most, none for a forged port
                local reals alone forged
                reals=$(kv real "$OUT")
                alone=$(kv alone "$OUT")
                reals=$((${reals:-0} + ${alone:-0}))
                forged=$(forged_expects "$slice" "$flow" "$OUT")
                ((F_EXPECT <= reals)) ||
                    problems+="ftpct logged $F_EXPECT expectation(s) for $reals real announcement(s); "
                ((forged == 0)) || problems+="ftpct logged $forged expectation(s) for a forged port; "
                ;;
        esac
        if [[ $runner == send || $runner == srvsend ]] && ((F_LINES > LOG_MAX)); then
            problems+="ftpct logged $F_LINES lines for one session (max $LOG_MAX: not rate-limited); "
        fi
        if ! kill -0 "$FTPCT_PID" 2>/dev/null; then
            problems+="ftpct is no longer running (crash?): $(tail -n 3 "$FTPCT_LOG" | tr '\n' ' '); "
            FTPCT_PID=''
            GW_MODE=''
        fi
    fi
    [[ -n $probes ]] && DETAILS="probes: $probes; $DETAILS"
    DETAILS+="$(grep -E '^(noop|detail|received)' "$OUT" | head -n 4 | tr '\n\t' '; ' || true)"
    [[ $runner == echo || $runner == listend || $runner == longopen ]] &&
        DETAILS+="$(awk '/^attempt / && (!/RETR ok/ || /open\(/)' "$OUT" | head -n 3 | cut -c1-300 | tr '\n\t' '; ')"
    DETAILS+="legit: $LEGIT_WHY"
    local good=0
    case $result in closed | usable | file-ok) [[ -z $problems ]] && good=1 ;; esac
    if [[ $mode == kernel ]]; then
        if ((good)); then verdict=info-ok; else verdict=info-differs; fi
    else
        if ((good)); then verdict=ok; else verdict=MISMATCH; fi
    fi
    [[ -n $problems ]] && DETAILS="PROBLEMS: $problems$DETAILS"
    R_NAME+=("$name") R_MODE+=("$mode") R_EXPECT+=("$EXPECT") R_RESULT+=("$result")
    R_VERDICT+=("$verdict") R_DETAILS+=("${DETAILS//$'\t'/ }")
    log "$(printf '%-32s %-6s %-24s %-9s %-12s %3ss' "$name" "$mode" "$EXPECT" "$result" "$verdict" $((SECONDS - t0)))"
    if [[ $verdict == MISMATCH ]]; then
        log "    $DETAILS"
        if [[ -n $slice ]]; then
            log "    ftpct's log for the hostile session (first lines):"
            grep -F "flow=$flow ->" "$slice" | head -n 6 | cut -c1-300 | sed 's/^/      | /' >&2 || true
        fi
    fi
    # A crashed ftpct comes back for the next case.
    if [[ $mode == ftpct && -z $GW_MODE ]]; then gw_mode ftpct; fi
    return 0
}

# --- main --------------------------------------------------------------------------------------

print_table() {
    local i bad=0
    {
        printf 'case\tmode\texpected\tresult\tverdict\tdetails\n'
        for i in "${!R_NAME[@]}"; do
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${R_NAME[$i]}" "${R_MODE[$i]}" "${R_EXPECT[$i]}" \
                "${R_RESULT[$i]}" "${R_VERDICT[$i]}" "${R_DETAILS[$i]}"
        done
    } >"$WORK/results.tsv"
    if [[ -n $TSV ]]; then cp "$WORK/results.tsv" "$TSV"; fi
    printf '\n%-32s %-6s %-30s %-9s %-12s %s\n' case mode expected result verdict details
    printf '%s\n' "$(printf '%.0s-' {1..130})"
    for i in "${!R_NAME[@]}"; do
        [[ ${R_VERDICT[$i]} == MISMATCH ]] && bad=$((bad + 1))
        printf '%-32s %-6s %-30s %-9s %-12s %s\n' "${R_NAME[$i]}" "${R_MODE[$i]}" "${R_EXPECT[$i]}" \
            "${R_RESULT[$i]}" "${R_VERDICT[$i]}" "${R_DETAILS[$i]}"
    done
    printf '%s\n' "$(printf '%.0s-' {1..130})"
    local where="$WORK/results.tsv"
    ((KEEP)) || where="${TSV:-not kept (--keep or --tsv FILE keeps the TSV)}"
    printf '%d run(s), %d ftpct mismatch(es), %d s; results: %s\n' "${#R_NAME[@]}" "$bad" "$SECONDS" "$where"
    ((bad == 0))
}

main() {
    parse_args "$@"
    lab_prerequisites
    local -a sel=()
    local name topo server runner args
    while read -r name topo server runner args; do
        [[ -z $name ]] && continue
        [[ -z $ONLY || $name =~ $ONLY ]] || continue
        sel+=("$name $topo $server $runner $args")
    done <<<"$CASES"
    ((${#sel[@]})) || die "no case matches --only \"$ONLY\""
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    set -o errtrace
    trap 'log "error: line $LINENO: $BASH_COMMAND failed"' ERR
    WORK=$(mktemp -d /tmp/ftpct-abuse.XXXXXX)
    chmod 0755 "$WORK"
    log "${#sel[@]} case(s), modes $MODES, work directory $WORK"
    local group mode line
    # Groups of cases sharing a topology and a server, in the table's order.
    for group in $(printf '%s\n' "${sel[@]}" | awk '{ print $2 "/" $3 }' | awk '!seen[$0]++'); do
        lab_to "${group%/*}" "${group#*/}"
        for mode in ftpct kernel; do
            has_mode "$mode" || continue
            gw_mode "$mode"
            for line in "${sel[@]}"; do
                read -r name topo server runner args <<<"$line"
                [[ $topo/$server == "$group" ]] || continue
                # shellcheck disable=SC2086 # runner arguments are words
                run_case "$name" "$mode" "$runner" $args
            done
        done
    done
    ftpct_stop
    trap - ERR
    print_table
}

main "$@"
