#!/usr/bin/env bash
# Builds ftpct's Debian package with cargo-deb and installs it into a
# throwaway root (dpkg --root): checks that it holds the binary, the systemd
# unit, the configuration as a conffile, the man pages and the completions,
# then runs the installed `ftpct --version` and `ftpct config check`
# chrooted there, with only the shared libraries its Depends name.
#
# Usage: scripts/deb-test.sh [--keep]
#   Needs root (chroot), cargo-deb (scripts/install-deps.sh installs it)
#   and a release build (built here when missing or stale).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1

log() { printf 'deb-test: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
ok() { log "ok: $*"; }

[[ $(id -u) -eq 0 ]] || die "run as root (chroot)"
command -v cargo-deb >/dev/null || die "cargo-deb missing: run scripts/install-deps.sh"
cd "$REPO"
WORK=$(mktemp -d /tmp/ftpct-deb.XXXXXX)
trap drop_work EXIT

cargo build --release --locked --quiet
FTPCT=target/release/ftpct
rm -rf target/assets
"$FTPCT" generate man target/assets/man >/dev/null
mkdir -p target/assets/completions
"$FTPCT" generate completions bash >target/assets/completions/ftpct.bash
"$FTPCT" generate completions zsh >target/assets/completions/_ftpct
"$FTPCT" generate completions fish >target/assets/completions/ftpct.fish
ok "man pages: $(cd target/assets/man && echo *)"

cargo deb --no-build --locked --output "$WORK/" >"$WORK/cargo-deb.log" 2>&1 ||
    { cat "$WORK/cargo-deb.log" >&2; die "cargo deb"; }
DEB=$(echo "$WORK"/ftpct_*.deb)
[[ -f $DEB ]] || die "no .deb in $WORK"
ok "built $(basename "$DEB") ($(du -h "$DEB" | cut -f1)); $(dpkg-deb -f "$DEB" Depends | sed 's/^/Depends: /')"

# A throwaway root with an empty dpkg database.
ROOT=$WORK/root
mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates"
: >"$ROOT/var/lib/dpkg/status"
: >"$ROOT/var/lib/dpkg/available"
# Depends (libc6, iptables, ipset) are not in this root: their absence is
# what --force-depends allows; the chroot below brings the libraries.
dpkg --root="$ROOT" --force-depends --force-not-root -i "$DEB" >"$WORK/dpkg.log" 2>&1 ||
    { cat "$WORK/dpkg.log" >&2; die "dpkg -i"; }
status=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Status}' ftpct)
[[ $status == "install ok installed" ]] || die "dpkg says: $status"
for f in usr/bin/ftpct lib/systemd/system/ftpct.service etc/ftpct/ftpct.toml \
    usr/share/bash-completion/completions/ftpct usr/share/zsh/vendor-completions/_ftpct \
    usr/share/fish/vendor_completions.d/ftpct.fish usr/share/doc/ftpct/LICENSE-MIT; do
    [[ -f $ROOT/$f ]] || die "$f not installed"
done
ls "$ROOT"/usr/share/man/man1/ftpct.1* "$ROOT"/usr/share/man/man1/ftpct-run.1* >/dev/null 2>&1 ||
    die "man pages not installed: $(ls "$ROOT/usr/share/man/man1" 2>&1)"
conffiles=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Conffiles}' ftpct)
[[ $conffiles == *"/etc/ftpct/ftpct.toml"* ]] || die "ftpct.toml is not a conffile: $conffiles"
ok "installed into $ROOT: binary, unit, conffile /etc/ftpct/ftpct.toml, man pages, completions"

# The completions complete, the man pages render.
words=$(bash -c 'source "$1"; COMP_WORDS=(ftpct run --con); COMP_CWORD=2
    COMP_LINE="ftpct run --con"; COMP_POINT=${#COMP_LINE}
    _ftpct ftpct --con run; echo "${COMPREPLY[*]}"' _ "$ROOT/usr/share/bash-completion/completions/ftpct")
[[ $words == *--config* ]] || die "bash completion of 'ftpct run --con' gave: $words"
ok "bash completion of 'ftpct run --con': $words"
if command -v man >/dev/null; then
    page=$(ls "$ROOT"/usr/share/man/man1/ftpct-run.1*)
    man -l "$page" 2>/dev/null | grep -q -- '--config <PATH>' || die "man -l $page does not show --config"
    ok "man -l $(basename "$page") renders, with --config"
fi

# Only the dynamic loader and the libraries the binary links, copied in.
while read -r lib; do
    [[ -n $lib ]] && install -D -m 0755 "$lib" "$ROOT$lib"
done < <(ldd "$ROOT/usr/bin/ftpct" | grep -o '/[^ ]*')
version=$(chroot "$ROOT" /usr/bin/ftpct --version)
[[ $version == "ftpct $(cargo metadata --no-deps --format-version 1 | python3 -c \
    'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ftpct"))')" ]] ||
    die "chroot ftpct --version said: $version"
ok "chroot $ROOT /usr/bin/ftpct --version: $version"
chroot "$ROOT" /usr/bin/ftpct config check >"$WORK/check.out" ||
    die "config check of the packaged /etc/ftpct/ftpct.toml"
grep -q '^queues = "0"' "$WORK/check.out" || die "config check: $(cat "$WORK/check.out")"
ok "chroot: ftpct config check reads the packaged /etc/ftpct/ftpct.toml"
log "all passed"
