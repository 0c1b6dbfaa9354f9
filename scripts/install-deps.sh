#!/usr/bin/env bash
# Install what the ftpct lab needs, and only what is missing.
#
# Idempotent and non-interactive: safe under CI=true with no standard input.
# Debian's FTP servers conflict as packages (each provides ftp-server), so
# vsftpd is installed with apt and pure-ftpd is unpacked with `dpkg -x` into
# $FTPCT_LAB_OPT/pure-ftpd (default /opt/ftpct-lab/pure-ftpd), its binary at
# .../usr/sbin/pure-ftpd. `apt-get update` runs only when something is missing.
#
# Usage: scripts/install-deps.sh [--check]
#   --check   install nothing; exit 1 when something is missing.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
LAB_OPT=${FTPCT_LAB_OPT:-/opt/ftpct-lab}
PURE_DIR=$LAB_OPT/pure-ftpd
PURE_BIN=$PURE_DIR/usr/sbin/pure-ftpd
CHECK_ONLY=0
[[ ${1:-} == --check ]] && CHECK_ONLY=1

# Debian packages and a command each one provides.
PKGS=(
    vsftpd:/usr/sbin/vsftpd
    curl:curl
    lftp:lftp
    iptables:iptables
    ipset:ipset
    conntrack:conntrack
    tcpdump:tcpdump
    iproute2:ip
    python3:python3
    ethtool:ethtool
    procps:pgrep
    util-linux:unshare
    nftables:nft
    conntrackd:conntrackd
    iputils-arping:arping
)

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
if ((${#missing[@]})); then
    ((CHECK_ONLY)) && die "missing packages: ${missing[*]}"
    apt_install "${missing[@]}"
fi

# 2. vsftpd's anonymous login needs the system user `ftp` (its package creates
#    it; recreate it if someone removed it).
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

# 3. pure-ftpd, unpacked beside the project.
pure_ok() {
    [[ -x $PURE_BIN ]] || return 1
    ! ldd "$PURE_BIN" 2>&1 | grep -q 'not found'
}

if ! pure_ok; then
    ((CHECK_ONLY)) && die "pure-ftpd missing or not runnable at $PURE_BIN"
    if [[ ! -x $PURE_BIN ]]; then
        apt_update_once
        tmp=$(mktemp -d /tmp/ftpct-deps.XXXXXX)
        trap 'rm -rf "$tmp"' EXIT
        # _apt needs to write the download directory.
        chown _apt "$tmp" 2>/dev/null || true
        log "apt-get download pure-ftpd"
        (cd "$tmp" && apt-get download -qq pure-ftpd </dev/null >/dev/null 2>&1) \
            || die "apt-get download pure-ftpd failed"
        deb=$(ls "$tmp"/pure-ftpd_*.deb)
        rm -rf "$PURE_DIR"
        mkdir -p "$PURE_DIR"
        dpkg -x "$deb" "$PURE_DIR"
        # Remember the package's library dependencies for step 4.
        dpkg-deb -f "$deb" Depends >"$PURE_DIR/.depends"
        dpkg-deb -f "$deb" Version >"$PURE_DIR/.version"
    fi
    # 4. Its libraries: install the lib* packages it depends on.
    if ldd "$PURE_BIN" 2>&1 | grep -q 'not found'; then
        libs=()
        if [[ -f $PURE_DIR/.depends ]]; then
            while read -r dep; do
                [[ $dep == lib* ]] && ! pkg_installed "$dep" && libs+=("$dep")
            done < <(tr ',' '\n' <"$PURE_DIR/.depends" | sed -e 's/([^)]*)//g' -e 's/|.*//' -e 's/ //g')
        fi
        ((${#libs[@]})) && apt_install "${libs[@]}"
    fi
    pure_ok || { ldd "$PURE_BIN" >&2 || true; die "pure-ftpd at $PURE_BIN is not runnable"; }
fi

# 5. cargo-deb, from the crates registry (scripts/deb-test.sh builds the
#    Debian package with it); pinned, built once (about 2 minutes).
CARGO_DEB_VERSION=3.8.0
if ! command -v cargo-deb >/dev/null 2>&1; then
    ((CHECK_ONLY)) && die "cargo-deb missing"
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup)"
    log "cargo install cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" </dev/null
fi

# 6. Final check: everything runs.
help=$("$PURE_BIN" --help 2>&1 || true)
[[ $help == *"pure-ftpd v"* ]] || die "pure-ftpd does not start"
log "ok: vsftpd $(dpkg-query -W -f='${Version}' vsftpd), pure-ftpd at $PURE_BIN" \
    "($(cat "$PURE_DIR/.version" 2>/dev/null || echo '?')), all tools present"
