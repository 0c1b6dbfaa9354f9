#!/usr/bin/env bash
# Install what the ftpct lab needs, and only what is missing.
#
# Idempotent and non-interactive: safe under CI=true with no standard input.
# Debian's FTP servers conflict as packages (each provides ftp-server:
# installing one removes another, even in the middle of a run), so none is
# installed: each is unpacked with `dpkg -x` beside the system, vsftpd into
# $FTPCT_LAB_OPT/vsftpd (default /opt/ftpct-lab), its binary at
# .../usr/sbin/vsftpd; pure-ftpd into $FTPCT_LAB_OPT/pure-ftpd, its binary at
# .../usr/sbin/pure-ftpd; proftpd
# (proftpd-core and the libraries it links that Debian's proftpd package set
# would bring) into $FTPCT_LAB_OPT/proftpd, run as
# `LD_LIBRARY_PATH=$FTPCT_LAB_OPT/proftpd/usr/lib/x86_64-linux-gnu
# $FTPCT_LAB_OPT/proftpd/usr/sbin/proftpd`. Debian's ftp-proxy (the
# userspace proxy the benchmark compares ftpct with) is unpacked the same
# way into $FTPCT_LAB_OPT/ftp-proxy, its binary at .../usr/sbin/ftp-proxy:
# installed, its package would start a daemon; the benchmark runs it in
# the gateway's namespace with its own configuration. pyftpdlib is Debian's
# python3-pyftpdlib, for /usr/bin/python3 (the hostile suite's echo cases
# run it). Debian's chromium and the DejaVu fonts render the `--html`
# ladder page to a PNG (tests/ladder_chromium.rs, the README's picture).
# pytest is Debian's python3-pytest, for /usr/bin/python3 (the lab harness,
# tests/lab: `/usr/bin/python3 -m pytest tests/lab`).
# `apt-get update` runs only when something is missing.
#
# Usage: scripts/install-deps.sh [--check|--demo]
#   --check   install nothing; exit 1 when something is missing.
#   --demo    only what scripts/demo.sh needs (its lab: vsftpd, curl, the
#             firewall tools, Debian's python3).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
LAB_OPT=${FTPCT_LAB_OPT:-/opt/ftpct-lab}
VSFTPD_DIR=$LAB_OPT/vsftpd
VSFTPD_BIN=$VSFTPD_DIR/usr/sbin/vsftpd
PURE_DIR=$LAB_OPT/pure-ftpd
PURE_BIN=$PURE_DIR/usr/sbin/pure-ftpd
PROFTPD_DIR=$LAB_OPT/proftpd
PROFTPD_BIN=$PROFTPD_DIR/usr/sbin/proftpd
PROFTPD_LIBS=$PROFTPD_DIR/usr/lib/x86_64-linux-gnu
# proftpd-core, and the libraries it links that are not in Debian's base
# system (they come unpacked beside it, not installed).
PROFTPD_DEBS=(proftpd-core libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3 libhashkit2)
FTP_PROXY_DIR=$LAB_OPT/ftp-proxy
FTP_PROXY_BIN=$FTP_PROXY_DIR/usr/sbin/ftp-proxy
CHECK_ONLY=0 DEMO=0
case ${1:-} in
    --check) CHECK_ONLY=1 ;;
    --demo) DEMO=1 ;;
    '') ;;
    *) echo "usage: scripts/install-deps.sh [--check|--demo]" >&2; exit 2 ;;
esac

# Debian packages and a command each one provides.
PKGS=(
    curl:curl
    lftp:lftp
    iptables:iptables
    ipset:ipset
    conntrack:conntrack
    tcpdump:tcpdump
    strace:strace
    iproute2:ip
    python3:python3
    ethtool:ethtool
    procps:pgrep
    util-linux:unshare
    nftables:nft
    conntrackd:conntrackd
    iputils-arping:arping
    python3-pyftpdlib:/usr/bin/python3
    chromium:chromium
    python3-pytest:pytest-3
)
# Packages that bring a file, not a command: package and the file.
FILE_PKGS=(
    fonts-dejavu-core:/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
)
if ((DEMO)); then
    PKGS=(curl:curl iptables:iptables ipset:ipset conntrack:conntrack iproute2:ip procps:pgrep
        python3:/usr/bin/python3)
    FILE_PKGS=()
fi

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

APT_UPDATED=0
apt_update_once() {
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -qq </dev/null >/dev/null
        APT_UPDATED=1
    fi
}

apt_install() {
    apt_update_once
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@" </dev/null >/dev/null
}

[[ $(id -u) -eq 0 ]] || die "run as root"
command -v apt-get >/dev/null || die "apt-get not found (Debian-based system needed)"

# 1. Debian packages.
missing=()
for entry in "${PKGS[@]}"; do
    pkg=${entry%%:*}
    cmd=${entry#*:}
    if ! pkg_installed "$pkg" || ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
for entry in "${FILE_PKGS[@]}"; do
    pkg=${entry%%:*}
    file=${entry#*:}
    if ! pkg_installed "$pkg" || [[ ! -e $file ]]; then
        missing+=("$pkg")
    fi
done
# Debian's pyftpdlib is for Debian's python3, which PATH may not name first.
if ((!DEMO)) && ! /usr/bin/python3 -c 'import pyftpdlib' >/dev/null 2>&1 && [[ " ${missing[*]} " != *" python3-pyftpdlib "* ]]; then
    missing+=(python3-pyftpdlib)
fi
if ((${#missing[@]})); then
    ((CHECK_ONLY)) && die "missing packages: ${missing[*]}"
    apt_install "${missing[@]}"
fi

# 2. The servers' anonymous login needs the system user `ftp` (their
#    packages would create it; they are unpacked, not installed).
if ! getent passwd ftp >/dev/null; then
    ((CHECK_ONLY)) && die "system user ftp missing"
    log "creating system user ftp"
    useradd --system --home-dir /srv/ftp --shell /usr/sbin/nologin ftp
fi
ftp_home=$(getent passwd ftp | cut -d: -f6)
if [[ ! -d $ftp_home ]]; then
    ((CHECK_ONLY)) && die "home of user ftp ($ftp_home) missing"
    install -d -m 0755 -o root -g ftp "$ftp_home"
fi

# 3. Servers unpacked beside the project: `apt-get download` the packages
#    into a temporary folder, `dpkg -x` each into DIR; the library packages
#    their Depends name that the binary still misses are then installed.
TMP_DEBS=''
trap '[[ -n $TMP_DEBS ]] && rm -rf "$TMP_DEBS"' EXIT

# runnable BIN [LIBDIR]: BIN exists and finds every library it links.
runnable() {
    [[ -x $1 ]] || return 1
    ! LD_LIBRARY_PATH=${2:-} ldd "$1" 2>&1 | grep -q 'not found'
}

# unpack DIR BIN PKG...: unpacks the packages into DIR unless BIN is there
# (DIR/.depends: their Depends; DIR/.version: the first one's version).
unpack() {
    local dir=$1 bin=$2 deb pkg
    shift 2
    [[ -x $bin ]] && return 0
    apt_update_once
    TMP_DEBS=$(mktemp -d /tmp/ftpct-deps.XXXXXX)
    # _apt needs to write the download directory.
    chown _apt "$TMP_DEBS" 2>/dev/null || true
    log "apt-get download $*"
    (cd "$TMP_DEBS" && apt-get download -qq "$@" </dev/null >/dev/null 2>&1) \
        || die "apt-get download $* failed"
    rm -rf "$dir"
    mkdir -p "$dir"
    : >"$dir/.depends"
    for pkg in "$@"; do
        deb=$(ls "$TMP_DEBS/${pkg}"_*.deb)
        dpkg -x "$deb" "$dir"
        dpkg-deb -f "$deb" Depends >>"$dir/.depends"
    done
    dpkg-deb -f "$(ls "$TMP_DEBS/${1}"_*.deb)" Version >"$dir/.version"
    rm -rf "$TMP_DEBS"
    TMP_DEBS=''
}

# lib_depends DIR BIN [LIBDIR]: installs the lib* packages of DIR/.depends
# that are neither installed nor unpacked there, when BIN misses a library.
lib_depends() {
    local dir=$1 bin=$2 libdir=${3:-} dep
    local -a libs=()
    runnable "$bin" "$libdir" && return 0
    [[ -f $dir/.depends ]] || return 0
    while read -r dep; do
        [[ $dep == lib* ]] || continue
        [[ -e $dir/usr/share/doc/$dep ]] && continue # unpacked beside it
        pkg_installed "$dep" || libs+=("$dep")
    done < <(tr ',' '\n' <"$dir/.depends" | sed -e 's/([^)]*)//g' -e 's/|.*//' -e 's/ //g' | sort -u)
    ((${#libs[@]})) && apt_install "${libs[@]}"
    return 0
}

if ! runnable "$VSFTPD_BIN"; then
    ((CHECK_ONLY)) && die "vsftpd missing or not runnable at $VSFTPD_BIN"
    unpack "$VSFTPD_DIR" "$VSFTPD_BIN" vsftpd
    lib_depends "$VSFTPD_DIR" "$VSFTPD_BIN"
    runnable "$VSFTPD_BIN" || { ldd "$VSFTPD_BIN" >&2 || true; die "vsftpd at $VSFTPD_BIN is not runnable"; }
fi
# (vsftpd -v writes its version to its standard input.)
[[ $("$VSFTPD_BIN" -v 0>&1 2>&1) == *"vsftpd: version"* ]] || die "vsftpd at $VSFTPD_BIN does not start"
if ((DEMO)); then
    log "ok: vsftpd at $VSFTPD_BIN ($(cat "$VSFTPD_DIR/.version")), the demo's tools present"
    exit 0
fi

if ! runnable "$PURE_BIN"; then
    ((CHECK_ONLY)) && die "pure-ftpd missing or not runnable at $PURE_BIN"
    unpack "$PURE_DIR" "$PURE_BIN" pure-ftpd
    lib_depends "$PURE_DIR" "$PURE_BIN"
    runnable "$PURE_BIN" || { ldd "$PURE_BIN" >&2 || true; die "pure-ftpd at $PURE_BIN is not runnable"; }
fi

# 4. proftpd, the same way, with its libraries beside it.
if ! runnable "$PROFTPD_BIN" "$PROFTPD_LIBS"; then
    ((CHECK_ONLY)) && die "proftpd missing or not runnable at $PROFTPD_BIN"
    unpack "$PROFTPD_DIR" "$PROFTPD_BIN" "${PROFTPD_DEBS[@]}"
    lib_depends "$PROFTPD_DIR" "$PROFTPD_BIN" "$PROFTPD_LIBS"
    runnable "$PROFTPD_BIN" "$PROFTPD_LIBS" || {
        LD_LIBRARY_PATH=$PROFTPD_LIBS ldd "$PROFTPD_BIN" >&2 || true
        die "proftpd at $PROFTPD_BIN is not runnable"
    }
fi

# 5. ftp-proxy, the same way (its libraries are Debian's base ones or
#    installed).
if ! runnable "$FTP_PROXY_BIN"; then
    ((CHECK_ONLY)) && die "ftp-proxy missing or not runnable at $FTP_PROXY_BIN"
    unpack "$FTP_PROXY_DIR" "$FTP_PROXY_BIN" ftp-proxy
    lib_depends "$FTP_PROXY_DIR" "$FTP_PROXY_BIN"
    runnable "$FTP_PROXY_BIN" || { ldd "$FTP_PROXY_BIN" >&2 || true; die "ftp-proxy at $FTP_PROXY_BIN is not runnable"; }
fi

# 6. cargo-deb, from the crates registry (scripts/deb-test.sh builds the
#    Debian package with it); pinned, built once (about 2 minutes).
CARGO_DEB_VERSION=3.8.0
if ! command -v cargo-deb >/dev/null 2>&1; then
    ((CHECK_ONLY)) && die "cargo-deb missing"
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup)"
    log "cargo install cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" </dev/null
fi

# 7. Final check: everything runs.
help=$("$PURE_BIN" --help 2>&1 || true)
[[ $help == *"pure-ftpd v"* ]] || die "pure-ftpd does not start"
version=$(LD_LIBRARY_PATH=$PROFTPD_LIBS "$PROFTPD_BIN" -v 2>&1 || true)
[[ $version == *"ProFTPD Version"* ]] || die "proftpd does not start: $version"
[[ $("$FTP_PROXY_BIN" -V 2>&1 || true) == *[0-9].[0-9]* ]] || die "ftp-proxy does not start"
/usr/bin/python3 -c 'import pyftpdlib.servers' || die "pyftpdlib does not import in /usr/bin/python3"
log "ok: vsftpd at $VSFTPD_BIN ($(cat "$VSFTPD_DIR/.version")), pure-ftpd at $PURE_BIN" \
    "($(cat "$PURE_DIR/.version" 2>/dev/null || echo '?')), proftpd at $PROFTPD_BIN" \
    "($(cat "$PROFTPD_DIR/.version" 2>/dev/null || echo '?')), ftp-proxy at $FTP_PROXY_BIN" \
    "($(cat "$FTP_PROXY_DIR/.version" 2>/dev/null || echo '?')), pyftpdlib" \
    "$(dpkg-query -W -f='${Version}' python3-pyftpdlib), all tools present"
