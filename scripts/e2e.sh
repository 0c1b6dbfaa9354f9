#!/usr/bin/env bash
# End-to-end matrix: real FTP transfers (curl, lftp, Python's ftplib against
# vsftpd and pure-ftpd) through the namespace lab's gateway (scripts/lab.sh),
# in three gateway modes:
#   ftpct   `ftpct rules --apply` and `ftpct run` (release build) in the
#           gateway's namespace: every case must pass (an FXP case without
#           --allow-fxp must fail: ftpct refuses it);
#   kernel  the kernel's own helper (`scripts/lab.sh helper on`): must pass
#           (it refuses FXP: those fail);
#   none    no helper at all: must FAIL. The lab's gateway drops every
#           forwarded connection that is not ESTABLISHED,RELATED or a new
#           control connection to port 21, so every data connection, active
#           or passive, NAT or not, needs a helper to make it RELATED.
# The cases are in tests/e2e/matrix (one client session each: LIST, RETR,
# STOR of 0 B, 1 KiB and 50 MiB files with SHA-256 checks, several transfers
# per session, idle sessions, FXP). ftpct runs them all; the kernel and none
# controls run the cases tagged ctl (one per mode x topology x family).
# Each case also checks the client really used its mode (PORT, EPRT, PASV,
# EPSV in its transcript) and, under ftpct, that ftpct's log shows an
# expectation and a matched data connection per transfer (a rewrite where
# NAT needs one, a refusal for a refused FXP).
#
# A failure counts only when the client logged in (else the result is
# "broken": the lab, not the data connection, failed). A table is printed at
# the end; the exit status is non-zero when any case's result differs from
# the expected one. Everything is taken down on exit,
# Ctrl-C included (ftpct stopped, `ftpct rules --delete`, lab down).
#
# Usage: scripts/e2e.sh [--only REGEX] [--modes ftpct,kernel,none] [--quick]
#                       [--all-controls] [--keep] [--verbose]
#   --only REGEX   cases whose name matches (names: TOPO-FAM-MODE-CLIENT-SERVER
#                  [-TAG], e.g. snat-v4-port-curl-vsftpd, fxp-v4-fxp-python-vsftpd-deny)
#   --modes LIST   gateway modes to run, comma-separated (default: all three)
#   --quick        only the cases tagged ctl or quick (no 50 MiB, idle, multi)
#   --all-controls run the kernel and none controls on every case, not only ctl
#   --keep         keep the work directory (client transcripts, ftpct logs)
#   --verbose      print each client's transcript, not only failing ones
# Needs root, the release build (cargo build --release) and the lab's
# packages (scripts/install-deps.sh). The lab's namespaces are named
# ftpct-e2e-* (FTPCT_LAB_PREFIX overrides).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh
FTPCT=${FTPCT_BIN:-$REPO/target/release/ftpct}
MATRIX=$REPO/tests/e2e/matrix
PYCLIENT=$REPO/tests/e2e/ftpc.py
# A lab of its own (namespaces ftpct-e2e-*), so that a lab a developer has up
# beside it is left alone.
export FTPCT_LAB_PREFIX=${FTPCT_LAB_PREFIX:-ftpct-e2e-}
NS_CLI=${FTPCT_LAB_PREFIX}cli
NS_GW=${FTPCT_LAB_PREFIX}gw
TIMEOUT_PASS=20 # seconds a client may take when it should succeed
TIMEOUT_FAIL=5  # ... and when it should fail (the data connection hangs)
FXP_ALLOW=(--allow-fxp 198.51.100.0/24 --allow-fxp 2001:db8:2::/64)

ONLY=''
MODES=ftpct,kernel,none
QUICK=0
ALL_CONTROLS=0
KEEP=0
VERBOSE=0

log() { printf 'e2e: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while (($#)); do
        case $1 in
            --only) [[ $# -ge 2 ]] || usage; ONLY=$2; shift 2 ;;
            --modes) [[ $# -ge 2 ]] || usage; MODES=$2; shift 2 ;;
            --quick) QUICK=1; shift ;;
            --all-controls) ALL_CONTROLS=1; shift ;;
            --keep) KEEP=1; shift ;;
            --verbose) VERBOSE=1; shift ;;
            -h | --help) usage ;;
            *) log "unknown argument '$1'"; usage ;;
        esac
    done
    check_modes ftpct kernel none
}

has_tag() { [[ ,$1, == *,$2,* ]]; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- state and clean-up -----------------------------------------------------

WORK=''
FTPCT_PID=''
FTPCT_ARGS=''  # arguments of the running ftpct ('' when none runs)
FTPCT_LOG=''
GW_MODE=''     # gateway mode now set up
CLIENT_PID=''
LAB_UP=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $CLIENT_PID ]] && kill "$CLIENT_PID" 2>/dev/null
    ftpct_stop
    rules_delete
    ((LAB_UP)) && "$LAB" down >/dev/null 2>&1
    drop_work
    exit "$rc"
}

# --- gateway modes ----------------------------------------------------------

gw() { ip netns exec "$NS_GW" "$@"; }
gw_up() { [[ -e /run/netns/$NS_GW ]]; }

rules_apply() {
    gw "$FTPCT" rules --apply >>"$WORK/rules.log" 2>&1 \
        || { tail -n 20 "$WORK/rules.log" >&2; die "ftpct rules --apply failed"; }
}

rules_delete() {
    gw_up || return 0
    [[ -x $FTPCT ]] || return 0
    gw "$FTPCT" rules --delete >>"${WORK:-/tmp}/rules.log" 2>&1 || log "warning: ftpct rules --delete failed"
    return 0
}

# ftpct_start ARGS...: `ftpct run` in the gateway, log in $FTPCT_LOG.
ftpct_start() {
    FTPCT_LOG=$WORK/ftpct-$(date +%H%M%S%N).log
    log "ftpct run $*  (log: $(basename "$FTPCT_LOG"))"
    # Not through gw(): $! must be ftpct itself (ip netns exec execs it).
    ip netns exec "$NS_GW" "$FTPCT" run "$@" </dev/null >"$FTPCT_LOG" 2>&1 &
    FTPCT_PID=$!
    FTPCT_ARGS="$*"
    # Ready when it has bound its queue: its start-up line, within 5 s.
    wait_running
}

ftpct_stop() {
    stop_pid "$FTPCT_PID" || log "warning: ftpct did not stop in 5 s: killed"
    FTPCT_PID='' FTPCT_ARGS=''
}

# gw_mode MODE [FTPCT_ARGS...]: set the gateway up for MODE (idempotent).
gw_mode() {
    local mode=$1; shift
    [[ $mode == "$GW_MODE" && ($mode != ftpct || "$*" == "$FTPCT_ARGS") ]] && return 0
    ftpct_stop
    if [[ $mode != ftpct || $GW_MODE != ftpct ]]; then
        rules_delete
        "$LAB" helper off >/dev/null
    fi
    case $mode in
        none) ;;
        kernel) "$LAB" helper on >/dev/null ;;
        ftpct)
            [[ $GW_MODE == ftpct ]] || rules_apply
            ftpct_start "$@"
            ;;
    esac
    GW_MODE=$mode
    flush_conntrack
}

lab_up() { # TOPO SERVER
    log "lab up $1 $2"
    LAB_UP=1
    GW_MODE='' FTPCT_PID='' FTPCT_ARGS=''
    "$LAB" up "$1" "$2" >/dev/null
    eval "$("$LAB" env)"
}

lab_server() { # SERVER
    log "lab server $1"
    ftpct_stop
    "$LAB" server "$1" >/dev/null
    GW_MODE=''
}

# --- cases ------------------------------------------------------------------

# Parallel arrays, one entry per selected case.
C_NAME=() C_TOPO=() C_FAM=() C_MODE=() C_CLIENT=() C_SERVER=() C_TAGS=() C_OPS=()

case_name() { # topo fam mode client server tags
    local name="$1-$2-$3-$4-$5" t
    for t in multi idle big deny allowfxp; do
        if has_tag "$6" "$t"; then name+=-$t; fi
    done
    printf '%s' "$name"
}

check_case_line() { # topo fam mode client server ops
    [[ $1 =~ ^(snat|dnat|plain|fxp)$ ]] || die "matrix: bad topology '$1'"
    [[ $2 =~ ^v[46]$ ]] || die "matrix: bad family '$2'"
    [[ $3 =~ ^(port|eprt|pasv|epsv|fxp)$ ]] || die "matrix: bad mode '$3'"
    [[ $4 =~ ^(curl|lftp|python)$ ]] || die "matrix: bad client '$4'"
    [[ $5 =~ ^(vsftpd|pure-ftpd)$ ]] || die "matrix: bad server '$5'"
    [[ $2-$3 != v6-port && $2-$3 != v6-pasv ]] || die "matrix: $3 is IPv4 only"
    [[ $4 != curl || $6 != *idle* ]] || die "matrix: curl cannot stay idle"
    [[ $4-$2-$3 != lftp-v4-eprt ]] || die "matrix: lftp never sends EPRT over IPv4"
    if [[ $1 == fxp || $3 == fxp ]]; then
        [[ $1-$3-$4 == fxp-fxp-python ]] || die "matrix: FXP is python's mode fxp, in the fxp topology"
    fi
    local op
    for op in ${6//,/ }; do
        [[ $op =~ ^(ls|fxp|(get|put):(0|1k|50m)|idle:[0-9]+)$ ]] || die "matrix: bad operation '$op'"
    done
}

load_cases() {
    local topo fam mode client server tags ops name seen=' '
    while read -r topo fam mode client server tags ops; do
        [[ -z $topo || $topo == \#* ]] && continue
        check_case_line "$topo" "$fam" "$mode" "$client" "$server" "$ops"
        name=$(case_name "$topo" "$fam" "$mode" "$client" "$server" "$tags")
        [[ $seen != *" $name "* ]] || die "matrix: duplicate case $name"
        seen+="$name "
        [[ -z $ONLY || $name =~ $ONLY ]] || continue
        if ((QUICK)) && ! has_tag "$tags" ctl && ! has_tag "$tags" quick; then continue; fi
        C_NAME+=("$name") C_TOPO+=("$topo") C_FAM+=("$fam") C_MODE+=("$mode")
        C_CLIENT+=("$client") C_SERVER+=("$server") C_TAGS+=("$tags") C_OPS+=("$ops")
    done <"$MATRIX"
    ((${#C_NAME[@]})) || die "no case matches --only \"$ONLY\""
}

# expected CASE_INDEX GWMODE: pass or fail.
expected() {
    local tags=${C_TAGS[$1]} topo=${C_TOPO[$1]}
    case $2 in
        none) echo fail ;;
        kernel) if [[ $topo == fxp ]]; then echo fail; else echo pass; fi ;;
        ftpct) if has_tag "$tags" deny; then echo fail; else echo pass; fi ;;
    esac
}

# Does case I run in gateway mode M?
runs_in() {
    [[ $2 == ftpct ]] || ((ALL_CONTROLS)) || has_tag "${C_TAGS[$1]}" ctl
}

ftpct_args_for() { # CASE_INDEX -> words on stdout
    if has_tag "${C_TAGS[$1]}" allowfxp; then printf '%s ' "${FXP_ALLOW[@]}"; fi
}

# --- files ------------------------------------------------------------------

remote_file() { # SIZE -> name served by the lab
    case $1 in 0) echo empty.bin ;; 1k) echo 1k.bin ;; 50m) echo 50m.bin ;; *) die "bad size '$1'" ;; esac
}

# Upload sources, deterministic and different from the served files.
make_upload() { # SIZE -> path
    local size=$1 path=$WORK/up-$1.bin bytes
    if [[ ! -f $path ]]; then
        case $size in 0) bytes=0 ;; 1k) bytes=1024 ;; 50m) bytes=$((50 << 20)) ;; *) die "bad size '$size'" ;; esac
        python3 -c 'import hashlib, sys
n = int(sys.argv[2])
data = hashlib.shake_256(b"ftpct-e2e upload").digest(n) if n else b""
open(sys.argv[1], "wb").write(data)' "$path" "$bytes"
        chmod 0644 "$path"
    fi
    printf '%s' "$path"
}

# --- clients ------------------------------------------------------------------

# plan_ops CASE_DIR UPLOAD_PREFIX OPS: fills OP_KIND/OP_A/OP_B
#   ls: A=local   get: A=remote B=local   put: A=local B=remote   idle: A=secs
plan_ops() {
    local dir=$1 prefix=$2 op n=0
    OP_KIND=() OP_A=() OP_B=()
    for op in ${3//,/ }; do
        n=$((n + 1))
        case $op in
            ls) OP_KIND+=(ls) OP_A+=("$dir/ls-$n.txt") OP_B+=('') ;;
            get:*) OP_KIND+=(get) OP_A+=("$(remote_file "${op#get:}")") OP_B+=("$dir/get-$n-${op#get:}.bin") ;;
            put:*) OP_KIND+=(put) OP_A+=("$(make_upload "${op#put:}")") OP_B+=("upload/$prefix-$n-${op#put:}.bin") ;;
            idle:*) OP_KIND+=(idle) OP_A+=("${op#idle:}") OP_B+=('') ;;
            fxp) OP_KIND+=(fxp) OP_A+=(1k.bin) OP_B+=("upload/$prefix-fxp.bin") ;;
            *) die "matrix: bad operation '$op'" ;;
        esac
    done
}

# Number of data connections the operations open.
transfers() {
    local k n=0
    for k in "${OP_KIND[@]}"; do [[ $k == idle ]] || n=$((n + 1)); done
    echo "$n"
}

curl_cmd() { # URL MODE TIMEOUT
    local url=$1 i
    local -a base=(-gsSv -m "$3")
    case $2 in
        port) base+=(-P - --disable-eprt) ;;
        eprt) base+=(-P -) ;;
        pasv) base+=(--disable-epsv --no-ftp-skip-pasv-ip) ;;
        epsv) ;;
    esac
    CMD=(curl)
    for i in "${!OP_KIND[@]}"; do
        ((i == 0)) || CMD+=(--next)
        CMD+=("${base[@]}")
        case ${OP_KIND[$i]} in
            ls) CMD+=(-o "${OP_A[$i]}" "$url/") ;;
            get) CMD+=(-o "${OP_B[$i]}" "$url/${OP_A[$i]}") ;;
            put) CMD+=(-T "${OP_A[$i]}" "$url/${OP_B[$i]}") ;;
        esac
    done
}

lftp_cmd() { # URL MODE
    local s i
    s="set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10;"
    s+=" set net:reconnect-interval-base 1; set cmd:fail-exit yes; set xfer:clobber yes;"
    case $2 in
        port | eprt) s+=" set ftp:passive-mode off;" ;;
        pasv) s+=" set ftp:passive-mode on; set ftp:prefer-epsv no;" ;;
        epsv) s+=" set ftp:passive-mode on; set ftp:prefer-epsv yes;" ;;
    esac
    for i in "${!OP_KIND[@]}"; do
        case ${OP_KIND[$i]} in
            ls) s+=" ls > ${OP_A[$i]};" ;;
            get) s+=" get ${OP_A[$i]} -o ${OP_B[$i]};" ;;
            put) s+=" put ${OP_A[$i]} -o ${OP_B[$i]};" ;;
            idle) s+=" sleep ${OP_A[$i]};" ;;
        esac
    done
    CMD=(lftp -d -e "$s bye" "$1")
}

python_cmd() { # HOST MODE
    local i
    CMD=(python3 -u "$PYCLIENT" session "$2" "$1")
    for i in "${!OP_KIND[@]}"; do
        CMD+=("${OP_KIND[$i]}" "${OP_A[$i]}")
        [[ -n ${OP_B[$i]} ]] && CMD+=("${OP_B[$i]}")
    done
}

fxp_cmd() { # FAM
    if [[ $1 == v4 ]]; then
        CMD=(python3 -u "$PYCLIENT" fxp "$FTPCT_LAB_SRV4" "$FTPCT_LAB_SRV2_4" "${OP_A[0]}" "${OP_B[0]}")
    else
        CMD=(python3 -u "$PYCLIENT" fxp "$FTPCT_LAB_SRV6" "$FTPCT_LAB_SRV2_6" "${OP_A[0]}" "${OP_B[0]}")
    fi
}

# run_client I TIMEOUT TRANSCRIPT: runs the case's client in the client
# namespace (in the background, so that Ctrl-C is seen at once); its status.
run_client() {
    local i=$1 host url rc=0
    if [[ ${C_FAM[$i]} == v4 ]]; then host=$FTPCT_LAB_TARGET4 url=ftp://$host; else host=$FTPCT_LAB_TARGET6 url="ftp://[$host]"; fi
    case ${C_CLIENT[$i]}-${C_MODE[$i]} in
        *-fxp) fxp_cmd "${C_FAM[$i]}" ;;
        curl-*) curl_cmd "$url" "${C_MODE[$i]}" "$2" ;;
        lftp-*) lftp_cmd "$url" "${C_MODE[$i]}" ;;
        python-*) python_cmd "$host" "${C_MODE[$i]}" ;;
    esac
    printf '$ %s\n' "$(printf '%q ' "${CMD[@]}")" >"$3"
    ip netns exec "$NS_CLI" timeout -k 2 "$2" "${CMD[@]}" </dev/null >>"$3" 2>&1 &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=''
    return "$rc"
}

# --- checks -------------------------------------------------------------------

# verify_ops: every operation's result is on disk, checksums equal. Prints
# what is wrong, if anything.
verify_ops() {
    local i anon=$FTPCT_LAB_ANON
    for i in "${!OP_KIND[@]}"; do
        case ${OP_KIND[$i]} in
            ls) grep -q '1k\.bin' "${OP_A[$i]}" 2>/dev/null || echo "LIST: no listing" ;;
            get)
                [[ -f ${OP_B[$i]} && $(sha "${OP_B[$i]}") == "$(sha "$anon/${OP_A[$i]}")" ]] \
                    || echo "RETR ${OP_A[$i]}: missing or SHA-256 differs"
                ;;
            put)
                [[ -f $anon/${OP_B[$i]} && $(sha "$anon/${OP_B[$i]}") == "$(sha "${OP_A[$i]}")" ]] \
                    || echo "STOR ${OP_B[$i]}: missing or SHA-256 differs on the server"
                ;;
            fxp)
                [[ -f $anon/${OP_B[$i]} && $(sha "$anon/${OP_B[$i]}") == "$(sha "$anon/${OP_A[$i]}")" ]] \
                    || echo "FXP: ${OP_B[$i]} did not arrive on server B"
                ;;
        esac
    done
    return 0
}

# The client logged in (curl -v "< 230", lftp -d "<--- 230", ftplib "*resp* '230").
logged_in() {
    grep -qE "(^< |<--- |\*resp\* ')230[ -]" "$1"
}

# The commands a transcript shows the client sent (curl -v "> PORT",
# lftp -d "---> PORT", ftplib debug "*cmd* 'PORT").
sent_modes() {
    grep -oE "(^> |---> |\*cmd\* ')(PORT|EPRT|PASV|EPSV)\b" "$1" | grep -oE '(PORT|EPRT|PASV|EPSV)$' | sort -u | tr '\n' ' '
}

# verify_mode I TRANSCRIPT: the client used its mode, and no other.
verify_mode() {
    local want got
    case ${C_MODE[$1]} in
        port) want=PORT ;; eprt) want=EPRT ;; pasv) want=PASV ;; epsv) want=EPSV ;; *) return 0 ;;
    esac
    # lftp's active mode is EPRT over IPv6.
    [[ ${C_CLIENT[$1]}-${C_FAM[$1]}-$want == lftp-v6-PORT ]] && want=EPRT
    got=$(sent_modes "$2")
    [[ $got == "$want " ]] || echo "mode: client sent '${got% }', expected $want only"
}

# Events of one kind in a slice of ftpct's log (text or JSON lines).
count_events() { # FILE KIND
    grep -cE "event[\"=:]+\"?$2\"?([^a-z-]|$)" "$1" || true
}

# ftpct_log_check I SLICE: the decisions expected for the case.
ftpct_log_check() {
    local i=$1 f=$2 n exp data rew ref
    n=$(transfers)
    exp=$(count_events "$f" expect)
    data=$(count_events "$f" data-matched)
    rew=$(count_events "$f" rewrite)
    ref=$(count_events "$f" refused)
    if has_tag "${C_TAGS[$i]}" deny; then
        ((ref >= 1)) || echo "log: no refusal"
        ((data == 0)) || echo "log: $data data connection(s) matched, expected none"
        return 0
    fi
    ((exp >= n)) || echo "log: $exp expectation(s) for $n transfer(s)"
    ((data >= n)) || echo "log: $data data connection(s) matched for $n transfer(s)"
    ((ref == 0)) || echo "log: $ref refusal(s)"
    if needs_rewrite "$i" && ((rew < n)); then echo "log: $rew rewrite(s) for $n transfer(s)"; fi
    return 0
}

# NAT rewrites an address: active modes through snat, PASV through dnat.
needs_rewrite() {
    case ${C_TOPO[$1]}-${C_MODE[$1]} in
        snat-port | snat-eprt | dnat-pasv) return 0 ;;
        *) return 1 ;;
    esac
}

# --- one case -----------------------------------------------------------------

R_NAME=() R_GW=() R_EXPECT=() R_RESULT=() R_LOG=() R_SECS=() R_WHY=()

run_case() { # I GWMODE
    local i=$1 mode=$2 expect dir transcript rc=0 t0 problems='' result logres='-' why
    local off=0 slice
    expect=$(expected "$i" "$mode")
    dir=$WORK/cases/${C_NAME[$i]}.$mode
    mkdir -p "$dir"
    transcript=$dir/client.log
    plan_ops "$dir" "e2e-${C_NAME[$i]}-$mode" "${C_OPS[$i]}"
    flush_conntrack
    [[ $mode == ftpct && -n $FTPCT_LOG ]] && off=$(stat -c %s "$FTPCT_LOG")
    t0=$(now)
    local tmo=$TIMEOUT_PASS
    [[ $expect == fail ]] && tmo=$TIMEOUT_FAIL
    run_client "$i" "$tmo" "$transcript" || rc=$?
    ((rc == 0)) || problems+="client exit status $rc; "
    problems+=$(verify_ops | tr '\n' ';')
    [[ $rc -ne 0 ]] || problems+=$(verify_mode "$i" "$transcript")
    if [[ -z $problems ]]; then result=pass; else result=fail; fi
    # A failure proves something only if the control connection worked.
    if [[ $result == fail ]] && ! logged_in "$transcript"; then
        result=broken
        problems+="no login: the control connection itself failed; "
    fi
    if [[ $mode == ftpct && -n $FTPCT_LOG ]]; then
        sleep 0.1 # let the last decisions reach the log
        slice=$dir/ftpct.log
        # Without colours (the text format has them even in a file).
        tail -c +$((off + 1)) "$FTPCT_LOG" | sed 's/\x1b\[[0-9;]*m//g' >"$slice"
        why=$(ftpct_log_check "$i" "$slice" | tr '\n' ';')
        if [[ -z $why ]]; then logres=ok; else logres=bad; problems+="$why"; fi
    fi
    R_NAME+=("${C_NAME[$i]}") R_GW+=("$mode") R_EXPECT+=("$expect") R_RESULT+=("$result")
    R_LOG+=("$logres") R_SECS+=("$(elapsed "$t0")") R_WHY+=("$problems")
    report_case "$i" "$mode" "$expect" "$result" "$logres" "$problems" "$transcript" "${slice:-}"
    # The big files are checked: do not keep 100 MiB per case around.
    find "$dir" "$FTPCT_LAB_ANON/upload" -name '*50m*' -delete 2>/dev/null || true
}

report_case() { # I MODE EXPECT RESULT LOGRES PROBLEMS TRANSCRIPT [FTPCT_LOG_SLICE]
    local verdict=ok
    [[ $3 == "$4" && $5 != bad ]] || verdict=MISMATCH
    log "$(printf '%-44s %-6s expected %-4s got %-4s log %-3s %s' "${C_NAME[$1]}" "$2" "$3" "$4" "$5" "$verdict")"
    if [[ $verdict != ok || $VERBOSE == 1 ]]; then
        [[ -n $6 ]] && log "    problems: $6"
        log "    client transcript (end):"
        sed 's/^/      | /' "$7" | tail -n 40 >&2
        if [[ -n ${8:-} ]]; then
            log "    ftpct's log during the case:"
            sed 's/^/      | /' "$8" | tail -n 30 >&2
        fi
    fi
    return 0
}

# --- main -------------------------------------------------------------------

print_table() {
    local i bad=0 mark
    printf '\n%-46s %-7s %-9s %-7s %-4s %6s\n' case gateway expected result log secs
    printf '%s\n' "$(printf '%.0s-' {1..84})"
    for i in "${!R_NAME[@]}"; do
        mark=''
        if [[ ${R_EXPECT[$i]} != "${R_RESULT[$i]}" || ${R_LOG[$i]} == bad ]]; then mark='  <-- MISMATCH'; bad=$((bad + 1)); fi
        printf '%-46s %-7s %-9s %-7s %-4s %6s%s\n' "${R_NAME[$i]}" "${R_GW[$i]}" "${R_EXPECT[$i]}" \
            "${R_RESULT[$i]}" "${R_LOG[$i]}" "${R_SECS[$i]}" "$mark"
    done
    printf '%s\n' "$(printf '%.0s-' {1..84})"
    printf '%d run(s), %d as expected, %d mismatch(es), %d s\n' "${#R_NAME[@]}" \
        $((${#R_NAME[@]} - bad)) "$bad" "$SECONDS"
    ((bad == 0))
}

run_matrix() {
    local topo server mode i any
    for topo in snat dnat plain fxp; do
        for server in vsftpd pure-ftpd; do
            any=0
            for i in "${!C_NAME[@]}"; do
                [[ ${C_TOPO[$i]} == "$topo" && ${C_SERVER[$i]} == "$server" ]] && any=1
            done
            ((any)) || continue
            if [[ ${LAB_TOPO:-} != "$topo" ]]; then
                lab_up "$topo" "$server"
                LAB_TOPO=$topo
            else
                lab_server "$server"
            fi
            for mode in ftpct kernel none; do
                has_mode "$mode" || continue
                for i in "${!C_NAME[@]}"; do
                    [[ ${C_TOPO[$i]} == "$topo" && ${C_SERVER[$i]} == "$server" ]] || continue
                    runs_in "$i" "$mode" || continue
                    # shellcheck disable=SC2046 # ftpct's arguments are words
                    gw_mode "$mode" $(ftpct_args_for "$i")
                    run_case "$i" "$mode"
                done
            done
        done
    done
    ftpct_stop
}

main() {
    parse_args "$@"
    lab_prerequisites
    load_cases
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    WORK=$(mktemp -d /tmp/ftpct-e2e.XXXXXX)
    chmod 0755 "$WORK"
    log "${#C_NAME[@]} case(s), gateway modes $MODES, work directory $WORK"
    run_matrix
    print_table
}

main "$@"
