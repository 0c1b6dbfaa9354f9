#!/usr/bin/env bash
# Record the oracle captures in pcaps/lab/: real FTP sessions (curl, lftp,
# Python's ftplib against vsftpd and pure-ftpd) through the lab gateway with
# the KERNEL's FTP helper (nf_conntrack_ftp + nf_nat_ftp) attached, captured on
# both sides of the gateway inside its namespace:
#   NAME.inside.pcap    tcpdump -i gwin   (clients in snat/plain/fxp, server in dnat)
#   NAME.outside.pcap   tcpdump -i gwout
#   NAME.outside2.pcap  tcpdump -i gwout2 (fxp only: the second server)
# Full snaplen, -U --immediate-mode (without it packets wait in the
# TPACKET_V3 ring and a stop can lose them), filter `tcp`; veth offloads are off (FTPCT_LAB_OFFLOAD=off),
# so every captured checksum is a real one.
#
# Every transfer must succeed with the helper on (SHA-256 checked), except the
# FXP scenarios, which the kernel helper is expected to refuse: they are
# recorded with whatever outcome they have, for ftpct's policy engine.
#
# Then pcaps/lab/MANIFEST is written: one line per scenario, tab-separated,
# lines starting with '#' are comments:
#   name topology family mode client server op nat_args ports_kept outcome
# nat_args are the arguments the replay tool is given to emulate the gateway
# (empty field for plain and fxp); ports_kept says whether the gateway's NAT
# kept every source and destination port (yes, no: details, or n/a without
# NAT), read from the gateway's conntrack table after the session.
#
# pcaps/lab/REWRITES is then derived from the captures (the oracle's answers):
# every PORT, EPRT, 227 and 229 line, as seen on the inside and on the outside,
# tab-separated (travel: in->out or out->in, which way the line crossed):
#   name kind travel inside_text outside_text length_delta
# paired in order of appearance (outside2 merged into outside for fxp).
#
# Usage: scripts/record-pcaps.sh [--only REGEX] [--keep]
#        scripts/record-pcaps.sh --analyse     (only rewrite REWRITES; no root)
#   --only REGEX  record only the scenarios whose name matches (other MANIFEST
#                 lines are kept)
#   --keep        keep the work directory (client logs) and print its path
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh
OUT=$REPO/pcaps/lab
ONLY=
KEEP=0
ANALYSE_ONLY=0
while (($#)); do
    case $1 in
        --only) ONLY=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --analyse) ANALYSE_ONLY=1; shift ;;
        *) echo "usage: $0 [--only REGEX] [--keep] | --analyse" >&2; exit 2 ;;
    esac
done

# REWRITES from the captures listed in MANIFEST (pure Python, no root).
analyse() {
    python3 - "$OUT" <<'PYEOF'
import ipaddress, os, re, struct, sys

out = sys.argv[1]

def packets(path):
    d = open(path, "rb").read()
    magic = struct.unpack("<I", d[:4])[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise SystemExit("%s: not a little-endian pcap" % path)
    nano = magic == 0xA1B23C4D
    off = 24
    while off + 16 <= len(d):
        sec, frac, incl, _ = struct.unpack("<IIII", d[off:off + 16])
        off += 16
        pkt = d[off:off + incl]
        off += incl
        if len(pkt) < 14:
            continue
        et = struct.unpack("!H", pkt[12:14])[0]
        p = pkt[14:]
        if et == 0x0800:
            ihl = (p[0] & 15) * 4
            proto, src, dst = p[9], p[12:16], p[16:20]
            l4 = p[ihl:struct.unpack("!H", p[2:4])[0]]
        elif et == 0x86DD:
            proto, src, dst = p[6], p[8:24], p[24:40]
            l4 = p[40:40 + struct.unpack("!H", p[4:6])[0]]
        else:
            continue
        if proto != 6:
            continue
        sp, dp, seq = struct.unpack("!HHI", l4[:8])
        doff = (l4[12] >> 4) * 4
        yield (sec + frac / (1e9 if nano else 1e6), ipaddress.ip_address(src),
               sp, ipaddress.ip_address(dst), dp, seq, l4[doff:])

PAT = re.compile(rb"(?:^|\n)((PORT|EPRT|227|229)[ -][^\r\n]*)")

def messages(paths):
    seen, found = set(), []
    for path in paths:
        if not os.path.exists(path):
            continue
        for ts, src, sp, dst, dp, seq, payload in packets(path):
            key = (src, sp, dst, dp, seq)
            if not payload or key in seen:
                continue
            seen.add(key)
            for m in PAT.finditer(payload):
                found.append((ts, m.group(2).decode(), m.group(1).decode("latin-1")))
    return sorted(found)

rows, problems = [], 0
for line in open(os.path.join(out, "MANIFEST")):
    if line.startswith("#") or not line.strip():
        continue
    name, topo = line.split("\t")[:2]
    base = os.path.join(out, name)
    ins = messages([base + ".inside.pcap"])
    outs = messages([base + ".outside.pcap", base + ".outside2.pcap"])
    if len(ins) != len(outs):
        problems += 1
        print("analyse: %s: %d lines inside, %d outside" % (name, len(ins), len(outs)), file=sys.stderr)
    for i in range(max(len(ins), len(outs))):
        a = ins[i] if i < len(ins) else (0, "-", "-")
        b = outs[i] if i < len(outs) else (0, "-", "-")
        kind = a[1] if a[1] != "-" else b[1]
        delta = len(b[2]) - len(a[2]) if "-" not in (a[1], b[1]) else ""
        # Commands go client -> server, replies server -> client; the client
        # is outside only in dnat.
        client_inside = topo != "dnat"
        is_command = kind in ("PORT", "EPRT")
        travel = "in->out" if client_inside == is_command else "out->in"
        rows.append("\t".join([name, kind, travel, a[2], b[2], str(delta)]))

with open(os.path.join(out, "REWRITES"), "w") as f:
    f.write("# Derived from the captures by scripts/record-pcaps.sh --analyse: what the kernel's\n")
    f.write("# nf_nat_ftp did to each PORT/EPRT/227/229 line crossing the gateway.\n")
    f.write("# Columns (tab-separated): name kind travel inside_text outside_text length_delta\n")
    f.write("# travel: in->out (seen on gwin first) or out->in; length_delta: len(outside) - len(inside).\n")
    for r in rows:
        f.write(r + "\n")
print("analyse: %d lines in REWRITES, %d mismatch(es)" % (len(rows), problems), file=sys.stderr)
sys.exit(1 if problems else 0)
PYEOF
}

if ((ANALYSE_ONLY)); then
    analyse
    exit
fi

export FTPCT_LAB_OFFLOAD=off
unset FTPCT_LAB_PREFIX
NS_CLI=ftpct-cli NS_GW=ftpct-gw
CLIENT_TIMEOUT=60 # seconds, per client run (FXP waits for both servers to time out)

log() { printf 'record: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Scenarios: topology family mode client server op.
# mode: port pasv eprt epsv (fxp: fxp); op: download upload list multi fxp.
SCENARIOS=$(cat <<'EOF'
snat v4 port curl vsftpd download
snat v4 pasv curl vsftpd download
snat v4 eprt curl vsftpd download
snat v4 epsv curl vsftpd download
snat v4 port curl pure-ftpd upload
snat v4 pasv curl pure-ftpd list
snat v4 eprt curl pure-ftpd upload
snat v4 epsv curl pure-ftpd download
snat v4 port lftp vsftpd list
snat v4 pasv lftp vsftpd download
snat v4 port lftp pure-ftpd upload
snat v4 pasv lftp pure-ftpd list
snat v4 port python vsftpd upload
snat v4 pasv python pure-ftpd download
snat v4 eprt python vsftpd download
snat v4 epsv python pure-ftpd upload
snat v4 port lftp vsftpd multi
snat v4 pasv python vsftpd multi
snat v6 eprt curl vsftpd download
snat v6 epsv curl pure-ftpd download
snat v6 eprt lftp pure-ftpd upload
snat v6 epsv lftp vsftpd list
snat v6 eprt python vsftpd list
snat v6 eprt python pure-ftpd multi
dnat v4 pasv curl vsftpd download
dnat v4 epsv curl vsftpd download
dnat v4 port curl vsftpd download
dnat v4 pasv lftp pure-ftpd upload
dnat v4 port python pure-ftpd list
dnat v4 pasv python vsftpd multi
dnat v6 epsv curl vsftpd download
dnat v6 eprt curl pure-ftpd download
dnat v6 eprt python vsftpd upload
plain v4 port curl vsftpd download
plain v4 pasv python pure-ftpd download
fxp v4 fxp python vsftpd fxp
fxp v4 fxp python pure-ftpd fxp
fxp v6 fxp python vsftpd fxp
EOF
)

scenario_name() { # topo fam mode client server op
    printf '%s-%s-%s-%s-%s-%s' "$1" "$2" "$3" "$4" "${5//-/}" "$6"
}

nat_args() { # topo fam
    case $1-$2 in
        snat-v4) echo "--snat 192.0.2.0/24=198.51.100.1" ;;
        snat-v6) echo "--snat 2001:db8:1::/64=2001:db8:2::1" ;;
        dnat-v4) echo "--dnat 198.51.100.1=192.0.2.20" ;;
        dnat-v6) echo "--dnat 2001:db8:2::1=2001:db8:1::20" ;;
        *) echo "" ;;
    esac
}

# --- work directory, clean-up ---------------------------------------------

WORK=$(mktemp -d /tmp/ftpct-rec.XXXXXX)
TCPDUMP_PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${TCPDUMP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    "$LAB" down >/dev/null 2>&1 || true
    if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf -- "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Python client: one module for every mode, the FXP session included. It uses
# the address of a 227 reply as given (unlike ftplib's default), so that a
# wrong rewrite shows.
cat >"$WORK/ftpc.py" <<'EOF'
import ftplib, socket, sys

class Client(ftplib.FTP):
    mode = "epsv"

    def data_addr(self):
        if self.mode == "pasv":
            return ftplib.parse227(self.sendcmd("PASV"))
        return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())

    def ntransfercmd(self, cmd, rest=None):
        if self.mode in ("pasv", "epsv"):
            host, port = self.data_addr()
            conn = socket.create_connection((host, port), self.timeout)
            try:
                resp = self.sendcmd(cmd)
                if resp[0] == "2":
                    resp = self.getresp()
                if resp[0] != "1":
                    raise ftplib.error_reply(resp)
            except BaseException:
                conn.close()
                raise
            return conn, None
        local = self.sock.getsockname()[0]
        fam = self.sock.family
        with socket.create_server((local, 0), family=fam, backlog=1) as lsock:
            port = lsock.getsockname()[1]
            if self.mode == "port":
                self.sendcmd("PORT " + ",".join(local.split(".") + [str(port >> 8), str(port & 255)]))
            else:
                af = 1 if fam == socket.AF_INET else 2
                self.sendcmd("EPRT |%d|%s|%d|" % (af, local, port))
            resp = self.sendcmd(cmd)
            if resp[0] == "2":
                resp = self.getresp()
            if resp[0] != "1":
                raise ftplib.error_reply(resp)
            lsock.settimeout(self.timeout)
            conn, _ = lsock.accept()
        return conn, None

def login(host, mode):
    f = Client(timeout=15)
    f.mode = mode
    f.connect(host, 21)
    f.login("anonymous", "ftpct@example.com")
    f.voidcmd("TYPE I")
    return f

def main():
    op, mode, host = sys.argv[1:4]
    args = sys.argv[4:]
    if op == "fxp":
        # FXP: PASV (EPSV for IPv6) to A, PORT (EPRT) with A's address to B,
        # RETR on A, STOR on B.
        host_b, name, dest = args
        a, b = login(host, "pasv"), login(host_b, "pasv")
        if ":" in host:
            port = ftplib.parse229(a.sendcmd("EPSV"), a.sock.getpeername())[1]
            b.sendcmd("EPRT |2|%s|%d|" % (host, port))
        else:
            h, port = ftplib.parse227(a.sendcmd("PASV"))
            b.sendcmd("PORT " + ",".join(h.split(".") + [str(port >> 8), str(port & 255)]))
        a.putcmd("RETR " + name)
        b.putcmd("STOR " + dest)
        results = []
        for side, f in (("B", b), ("A", a)):
            try:
                r = f.getresp()
                if r.startswith("1"):
                    r = f.getresp()
                results.append("%s: %s" % (side, r))
            except Exception as e:
                results.append("%s: %s" % (side, e))
        print("; ".join(results))
        for f in (a, b):
            try:
                f.quit()
            except Exception:
                f.close()
        return
    f = login(host, mode)
    if op == "download":
        name, out = args
        with open(out, "wb") as fh:
            f.retrbinary("RETR " + name, fh.write)
    elif op == "multi":
        for name, out in zip(args[0::2], args[1::2]):
            with open(out, "wb") as fh:
                f.retrbinary("RETR " + name, fh.write)
    elif op == "upload":
        src, dest = args
        with open(src, "rb") as fh:
            f.storbinary("STOR " + dest, fh)
    elif op == "list":
        (out,) = args
        lines = []
        f.retrlines("LIST", lines.append)
        with open(out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    f.quit()

main()
EOF

# Upload source: 1 KiB, deterministic, different from the served files.
python3 -c 'import hashlib,sys; sys.stdout.buffer.write(hashlib.shake_256(b"ftpct-lab upload").digest(1024))' \
    >"$WORK/up-1k.bin"
chmod 0644 "$WORK/up-1k.bin"
chmod 0755 "$WORK"

# --- capture ----------------------------------------------------------------

# start_capture NAME IFACE SUFFIX: tcpdump in the gw namespace, wait for it.
start_capture() {
    local name=$1 dev=$2 suffix=$3 err pid i
    err=$WORK/$name.$suffix.tcpdump
    ip netns exec "$NS_GW" tcpdump -i "$dev" -s 0 -U --immediate-mode -n -w "$OUT/$name.$suffix.pcap" tcp \
        </dev/null >/dev/null 2>"$err" &
    pid=$!
    TCPDUMP_PIDS+=("$pid")
    for ((i = 0; i < 50; i++)); do
        grep -q 'listening on' "$err" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$err" >&2
    die "tcpdump on $dev did not start"
}

stop_captures() {
    local pid i
    for pid in "${TCPDUMP_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${TCPDUMP_PIDS[@]}"; do
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    TCPDUMP_PIDS=()
}

# Connections still open in the gateway (anything not TIME_WAIT/CLOSE).
gw_busy() {
    ip netns exec "$NS_GW" conntrack -L -p tcp 2>/dev/null |
        grep -vE ' (TIME_WAIT|CLOSE) ' | grep -q .
}

# Compare NAT tuples in the gateway: did every port stay what it was?
ports_kept() { # topo
    case $1 in plain | fxp) echo "n/a"; return ;; esac
    ip netns exec "$NS_GW" conntrack -L -p tcp 2>/dev/null | awk '
        {
            n = 0
            for (i = 1; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "sport" || kv[1] == "dport") v[++n] = kv[2]
            }
            # orig sport, orig dport, reply sport, reply dport
            if (n >= 4 && (v[1] != v[4] || v[2] != v[3])) {
                bad = bad sprintf(" %s->%s/%s->%s", v[1], v[4], v[2], v[3])
            }
            total++
        }
        END {
            if (total == 0) print "unknown"
            else if (bad == "") print "yes"
            else print "no:" bad
        }'
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- clients ----------------------------------------------------------------

# run_client NAME TOPO FAM MODE CLIENT OP -> sets OUTCOME
run_client() {
    local name=$1 topo=$2 fam=$3 mode=$4 client=$5 op=$6
    local host url anon cdir logf rc=0 dest
    eval "$("$LAB" env)"
    anon=$FTPCT_LAB_ANON
    cdir=$WORK/$name
    mkdir -p "$cdir"
    chmod 0755 "$cdir"
    logf=$WORK/$name.log
    if [[ $fam == v4 ]]; then host=$FTPCT_LAB_TARGET4; url=ftp://$host; else host=$FTPCT_LAB_TARGET6; url="ftp://[$host]"; fi
    dest=up-$name.bin
    local cx=(ip netns exec "$NS_CLI" timeout "$CLIENT_TIMEOUT")
    case $client in
        curl)
            local -a o=(-gsS --ftp-create-dirs -m 20)
            case $mode in
                port) o+=(-P - --disable-eprt) ;;
                eprt) o+=(-P -) ;;
                pasv) o+=(--disable-epsv --no-ftp-skip-pasv-ip) ;;
                epsv) ;;
            esac
            case $op in
                download) "${cx[@]}" curl "${o[@]}" -o "$cdir/1k.bin" "$url/1k.bin" ;;
                upload) "${cx[@]}" curl "${o[@]}" -T "$WORK/up-1k.bin" "$url/upload/$dest" ;;
                list) "${cx[@]}" curl "${o[@]}" -o "$cdir/list" "$url/" ;;
                multi) "${cx[@]}" curl "${o[@]}" -o "$cdir/1k.bin" "$url/1k.bin" \
                    -o "$cdir/empty.bin" "$url/empty.bin" -o "$cdir/1k-again.bin" "$url/1k.bin" ;;
            esac >"$logf" 2>&1 || rc=$?
            ;;
        lftp)
            local s="set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10;"
            s+=" set net:reconnect-interval-base 1; set cmd:fail-exit yes; set xfer:clobber yes;"
            case $mode in
                port | eprt) s+=" set ftp:passive-mode off;" ;;
                pasv) s+=" set ftp:passive-mode on; set ftp:prefer-epsv no;" ;;
                epsv) s+=" set ftp:passive-mode on; set ftp:prefer-epsv yes;" ;;
            esac
            case $op in
                download) s+=" get 1k.bin -o $cdir/1k.bin;" ;;
                upload) s+=" put $WORK/up-1k.bin -o upload/$dest;" ;;
                list) s+=" ls > $cdir/list;" ;;
                multi) s+=" get 1k.bin -o $cdir/1k.bin; get empty.bin -o $cdir/empty.bin; get 1k.bin -o $cdir/1k-again.bin;" ;;
            esac
            "${cx[@]}" lftp -e "$s bye" "$url" </dev/null >"$logf" 2>&1 || rc=$?
            ;;
        python)
            local py=(python3 "$WORK/ftpc.py")
            case $op in
                download) "${cx[@]}" "${py[@]}" download "$mode" "$host" 1k.bin "$cdir/1k.bin" ;;
                upload) "${cx[@]}" "${py[@]}" upload "$mode" "$host" "$WORK/up-1k.bin" "upload/$dest" ;;
                list) "${cx[@]}" "${py[@]}" list "$mode" "$host" "$cdir/list" ;;
                multi) "${cx[@]}" "${py[@]}" multi "$mode" "$host" 1k.bin "$cdir/1k.bin" \
                    empty.bin "$cdir/empty.bin" 1k.bin "$cdir/1k-again.bin" ;;
                fxp)
                    local hb=$FTPCT_LAB_SRV2_4
                    [[ $fam == v6 ]] && hb=$FTPCT_LAB_SRV2_6
                    "${cx[@]}" "${py[@]}" fxp fxp "$host" "$hb" 1k.bin "upload/$dest"
                    ;;
            esac >"$logf" 2>&1 || rc=$?
            ;;
    esac
    # Check the result.
    local want1k wantup
    want1k=$(sha "$anon/1k.bin")
    wantup=$(sha "$WORK/up-1k.bin")
    OUTCOME=ok
    case $op in
        download) [[ -f $cdir/1k.bin && $(sha "$cdir/1k.bin") == "$want1k" ]] || OUTCOME="FAILED (rc $rc)" ;;
        multi)
            [[ -f $cdir/1k.bin && $(sha "$cdir/1k.bin") == "$want1k" &&
                -f $cdir/1k-again.bin && $(sha "$cdir/1k-again.bin") == "$want1k" &&
                -f $cdir/empty.bin && ! -s $cdir/empty.bin ]] || OUTCOME="FAILED (rc $rc)"
            ;;
        upload) [[ -f $anon/upload/$dest && $(sha "$anon/upload/$dest") == "$wantup" ]] || OUTCOME="FAILED (rc $rc)" ;;
        list) grep -q '1k\.bin' "$cdir/list" 2>/dev/null || OUTCOME="FAILED (rc $rc)" ;;
        fxp)
            if [[ -f $anon/upload/$dest && $(sha "$anon/upload/$dest") == "$want1k" ]]; then
                OUTCOME="transferred"
            else
                OUTCOME="refused: $(tr '\n' ' ' <"$logf" | sed 's/[[:space:]]*$//')"
            fi
            ;;
    esac
    ((rc == 0)) || [[ $op == fxp ]] || OUTCOME="FAILED (rc $rc)"
}

# --- main loop ----------------------------------------------------------------

"$HERE/install-deps.sh" --check >/dev/null || die "missing dependencies: run scripts/install-deps.sh"
mkdir -p "$OUT"
declare -A RESULT

selected=()
while read -r topo fam mode client server op; do
    [[ -n $topo ]] || continue
    name=$(scenario_name "$topo" "$fam" "$mode" "$client" "$server" "$op")
    [[ -z $ONLY || $name =~ $ONLY ]] || continue
    selected+=("$topo $fam $mode $client $server $op")
done <<<"$SCENARIOS"
((${#selected[@]})) || die "no scenario matches '$ONLY'"
[[ -n $ONLY ]] || rm -f "$OUT"/*.pcap

failures=0
current_topo='' current_server=''
for topo in snat dnat plain fxp; do
    for server in vsftpd pure-ftpd; do
        for line in "${selected[@]}"; do
            read -r t fam mode client srv op <<<"$line"
            [[ $t == "$topo" && $srv == "$server" ]] || continue
            name=$(scenario_name "$t" "$fam" "$mode" "$client" "$srv" "$op")
            if [[ $current_topo != "$topo" ]]; then
                "$LAB" up "$topo" "$server" >/dev/null
                "$LAB" helper on >/dev/null
                current_topo=$topo current_server=$server
            elif [[ $current_server != "$server" ]]; then
                "$LAB" server "$server" >/dev/null
                current_server=$server
            fi
            rm -f "$OUT/$name".*.pcap
            ip netns exec "$NS_GW" conntrack -F >/dev/null 2>&1 || true
            ip netns exec "$NS_GW" conntrack -F expect >/dev/null 2>&1 || true
            start_capture "$name" gwin inside
            start_capture "$name" gwout outside
            [[ $topo == fxp ]] && start_capture "$name" gwout2 outside2
            run_client "$name" "$t" "$fam" "$mode" "$client" "$op"
            # Let the last FIN/ACKs cross the gateway (bounded), then stop.
            for ((i = 0; i < 30; i++)); do gw_busy || break; sleep 0.1; done
            sleep 0.2
            stop_captures
            kept=$(ports_kept "$topo")
            RESULT[$name]=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' \
                "$name" "$t" "$fam" "$mode" "$client" "$srv" "$op" "$(nat_args "$t" "$fam")" "$kept" "$OUTCOME")
            log "$name: $OUTCOME (ports kept: $kept)"
            if [[ $OUTCOME == FAILED* ]]; then
                failures=$((failures + 1))
                sed 's/^/    /' "$WORK/$name.log" >&2 || true
            fi
        done
    done
done

# MANIFEST: scenario order; lines of scenarios not recorded now are kept.
{
    echo "# ftpct lab captures, recorded by scripts/record-pcaps.sh with the kernel's FTP helper on."
    echo "# Files: NAME.inside.pcap (gw interface gwin), NAME.outside.pcap (gwout), NAME.outside2.pcap (gwout2, fxp only)."
    echo "# Columns (tab-separated): name topology family mode client server op nat_args ports_kept outcome"
    echo "# nat_args: replay tool arguments emulating the gateway (empty: no NAT). ports_kept: NAT kept every port."
    while read -r topo fam mode client server op; do
        [[ -n $topo ]] || continue
        name=$(scenario_name "$topo" "$fam" "$mode" "$client" "$server" "$op")
        if [[ -n ${RESULT[$name]:-} ]]; then
            printf '%s\n' "${RESULT[$name]}"
        elif [[ -f $OUT/MANIFEST ]]; then
            grep -P "^\Q$name\E\t" "$OUT/MANIFEST" || true
        fi
    done <<<"$SCENARIOS"
} >"$WORK/MANIFEST"
mv "$WORK/MANIFEST" "$OUT/MANIFEST"
analyse || failures=$((failures + 1))

log "captures in $OUT: $(du -sh "$OUT" | cut -f1), $failures failure(s)"
((failures == 0))
