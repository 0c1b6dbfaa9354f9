#!/usr/bin/env bash
# ftpct's Debian package through its life cycle, in a throwaway root:
# built by `cargo deb -p ftpct` alone (twice: revisions 1 and 2), then
# installed, upgraded from revision 1 to 2, removed and purged with
# `dpkg --root` (maintainer scripts run chrooted), all inside a network
# namespace of its own. At each step it checks the files, the conffile,
# dpkg's state, the rules, and what the maintainer scripts asked of
# systemd.
#
# systemd does not run as PID 1 here, so the root holds stand-ins for
# systemctl, deb-systemd-helper and deb-systemd-invoke that record their
# arguments (and /run/systemd/system, so the scripts believe systemd
# runs); the stand-in `deb-systemd-invoke start|restart` does what the
# unit's ExecStartPre does (`ftpct rules --apply`), so the rules show what
# a start would leave. The real unit under a real systemd is not run here.
# Then the installed binary runs chrooted with only the libraries it links:
# `ftpct --version`, `ftpct config check`; the completions and man pages
# are read.
#
# Usage: scripts/deb-test.sh [--keep]
#   Needs root (namespaces, chroot), cargo-deb (scripts/install-deps.sh
#   installs it), iptables. Leaves nothing behind (--keep: the work folder).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1
NS=ftpct-deb-$$

log() { printf 'deb-test: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
ok() { log "ok: $*"; }

cleanup() {
    ip netns del "$NS" 2>/dev/null || true
    drop_work
}

[[ $(id -u) -eq 0 ]] || die "run as root (namespaces, chroot)"
command -v cargo-deb >/dev/null || die "cargo-deb missing: run scripts/install-deps.sh"
cd "$REPO"
WORK=$(mktemp -d /tmp/ftpct-deb.XXXXXX)
trap cleanup EXIT

# --- build: cargo deb alone ---------------------------------------------
for rev in 1 2; do
    cargo deb -p ftpct --locked --deb-revision "$rev" --output "$WORK/" >"$WORK/cargo-deb-$rev.log" 2>&1 ||
        { cat "$WORK/cargo-deb-$rev.log" >&2; die "cargo deb -p ftpct (revision $rev)"; }
done
DEB1=$(echo "$WORK"/ftpct_*-1_*.deb)
DEB2=$(echo "$WORK"/ftpct_*-2_*.deb)
[[ -f $DEB1 && -f $DEB2 ]] || die "no .deb in $WORK: $(ls "$WORK")"
ok "cargo deb -p ftpct: $(basename "$DEB1") and $(basename "$DEB2") ($(du -h "$DEB1" | cut -f1)); $(dpkg-deb -f "$DEB1" Depends | sed 's/^/Depends: /'); Maintainer: $(dpkg-deb -f "$DEB1" Maintainer)"
scripts=$(dpkg-deb -I "$DEB1" | grep -oE '(preinst|postinst|prerm|postrm)' | sort -u | tr '\n' ' ')
[[ $scripts == *postinst*postrm*prerm* ]] || die "maintainer scripts missing: $scripts"
ok "maintainer scripts: $scripts"

# --- the throwaway root ---------------------------------------------------
ROOT=$WORK/root
CALLS=$ROOT/var/log/systemd-calls
mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates" "$ROOT/var/log" "$ROOT/tmp" \
    "$ROOT/run/systemd/system" "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/usr/lib"
ln -s usr/bin "$ROOT/bin"
ln -s usr/sbin "$ROOT/sbin"
ln -s usr/lib "$ROOT/lib"
ln -s usr/lib "$ROOT/lib64"
mkdir -p "$ROOT/dev" && mknod -m 666 "$ROOT/dev/null" c 1 3
: >"$ROOT/var/lib/dpkg/status"
: >"$ROOT/var/lib/dpkg/available"
: >"$CALLS"

# libs_of FILE: the libraries FILE links, copied in at the same paths.
libs_of() {
    local lib
    while read -r lib; do
        if [[ -n $lib && ! -e $ROOT$lib ]]; then install -D -m 0755 "$lib" "$ROOT$lib"; fi
    done < <(ldd "$1" 2>/dev/null | grep -o '/[^ ]*')
}
# copy_in FILE...: files and the libraries they link, at the same paths.
copy_in() {
    local f
    for f in "$@"; do
        install -D -m 0755 "$(readlink -f "$f")" "$ROOT$f"
        libs_of "$f"
    done
}
copy_in /usr/bin/dash /usr/bin/rm /usr/bin/mkdir /usr/bin/cat /usr/sbin/xtables-nft-multi
# What the package's Depends would bring: the libraries ftpct links.
libs_of target/release/ftpct
ln -s dash "$ROOT/usr/bin/sh"
for t in iptables ip6tables iptables-save ip6tables-save iptables-restore ip6tables-restore; do
    ln -s xtables-nft-multi "$ROOT/usr/sbin/$t"
done
xt=$(dirname "$(ldd /usr/sbin/xtables-nft-multi | grep -o '/[^ ]*libxtables[^ ]*')")/xtables
if [[ -d $xt ]]; then
    mkdir -p "$ROOT$xt" && cp -a "$xt/." "$ROOT$xt/"
    # The extensions' own libraries (connlabel needs libnetfilter_conntrack).
    for so in "$xt"/*.so; do libs_of "$so"; done
fi

# Stand-ins for systemd's tools: they record what they are asked.
stand_in() { # NAME BODY
    printf '#!/bin/sh\necho "%s $*" >>/var/log/systemd-calls\n%s\n' "$1" "$2" >"$ROOT/usr/bin/$1"
    chmod 755 "$ROOT/usr/bin/$1"
}
stand_in systemctl 'exit 0'
stand_in deb-systemd-helper 'exit 0'
stand_in deb-systemd-invoke 'case "$1" in start|restart) exec /usr/sbin/ftpct rules --apply >/dev/null ;; esac; exit 0'

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
dpkg_root() { # ARGS...: dpkg on the root, in the namespace; its output in $WORK/dpkg.log
    in_ns dpkg --root="$ROOT" --force-depends --force-not-root --force-bad-path "$@" >"$WORK/dpkg.log" 2>&1 ||
        { cat "$WORK/dpkg.log" >&2; die "dpkg $*"; }
}
status() { dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Status} ${Version}' ftpct 2>/dev/null || echo "unknown"; }
rules() { in_ns iptables-save -t raw | grep -c 'ftpct' || true; }
calls_since() { tail -n +"$(($1 + 1))" "$CALLS"; }
mark() { wc -l <"$CALLS"; }
expect_call() { # SINCE WORDS...
    local since=$1
    shift
    calls_since "$since" | grep -qx -- "$*" || die "no '$*' among the calls: $(calls_since "$since" | tr '\n' ';')"
}

# --- install --------------------------------------------------------------
m=$(mark)
dpkg_root -i "$DEB1"
[[ $(status) == "install ok installed 0.1.0-1" ]] || die "after install: $(status)"
for f in usr/sbin/ftpct usr/lib/systemd/system/ftpct.service etc/ftpct/ftpct.toml \
    usr/share/man/man8/ftpct.8.gz usr/share/man/man8/ftpct-run.8.gz usr/share/man/man8/ftpct-config-check.8.gz \
    usr/share/man/man5/ftpct.toml.5.gz usr/share/doc/ftpct/changelog.Debian.gz \
    usr/share/bash-completion/completions/ftpct usr/share/zsh/vendor-completions/_ftpct \
    usr/share/fish/vendor_completions.d/ftpct.fish usr/share/doc/ftpct/LICENSE-MIT; do
    [[ -f $ROOT/$f ]] || die "$f not installed: $(cd "$ROOT" && find usr/share/man usr/sbin usr/bin -type f | tr '\n' ' ')"
done
[[ ! -e $ROOT/usr/bin/ftpct ]] || die "ftpct in /usr/bin too"
conffiles=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Conffiles}' ftpct)
[[ $conffiles == *"/etc/ftpct/ftpct.toml"* ]] || die "ftpct.toml is not a conffile: $conffiles"
grep -q 'ExecStart=/usr/sbin/ftpct run' "$ROOT/usr/lib/systemd/system/ftpct.service" || die "the unit does not run /usr/sbin/ftpct"
expect_call "$m" deb-systemd-helper enable ftpct.service
expect_call "$m" deb-systemd-invoke start ftpct.service
(($(rules) > 0)) || die "no ftpct rule after the start"
ok "install: $(status); /usr/sbin/ftpct, unit, conffile, man8 and man5 pages, changelog; enabled and started; $(rules) raw-table rules"

# --- the installed binary, chrooted ---------------------------------------
version=$(chroot "$ROOT" /usr/sbin/ftpct --version)
[[ $version == "ftpct 0.1.0" ]] || die "chroot ftpct --version said: $version"
chroot "$ROOT" /usr/sbin/ftpct config check >"$WORK/check.out" || die "config check of the packaged file"
grep -q '^queues = "0"' "$WORK/check.out" || die "config check: $(cat "$WORK/check.out")"
words=$(bash -c 'source "$1"; COMP_WORDS=(ftpct run --con); COMP_CWORD=2
    COMP_LINE="ftpct run --con"; COMP_POINT=${#COMP_LINE}
    _ftpct ftpct --con run; echo "${COMPREPLY[*]}"' _ "$ROOT/usr/share/bash-completion/completions/ftpct")
[[ $words == *--config* ]] || die "bash completion of 'ftpct run --con' gave: $words"
if command -v man >/dev/null; then
    man -l "$ROOT/usr/share/man/man8/ftpct-run.8.gz" 2>/dev/null | grep -q 'EXIT STATUS' ||
        die "ftpct-run(8) has no EXIT STATUS"
    man -l "$ROOT/usr/share/man/man5/ftpct.toml.5.gz" 2>/dev/null | grep -q 'min_data_port = 1024' ||
        die "ftpct.toml(5) does not list min_data_port"
fi
ok "chroot: $version, config check reads the packaged file; completion gives $words; man pages render"

# --- upgrade --------------------------------------------------------------
echo '# a local change' >>"$ROOT/etc/ftpct/ftpct.toml"
m=$(mark)
dpkg_root -i "$DEB2"
[[ $(status) == "install ok installed 0.1.0-2" ]] || die "after upgrade: $(status)"
expect_call "$m" deb-systemd-invoke restart ftpct.service
if calls_since "$m" | grep -q 'invoke stop'; then die "stopped before the upgrade: $(calls_since "$m" | tr '\n' ';')"; fi
grep -q '^# a local change' "$ROOT/etc/ftpct/ftpct.toml" || die "the upgrade lost the local change to the conffile"
(($(rules) > 0)) || die "no ftpct rule after the upgrade"
ok "upgrade 1 -> 2: $(status); restarted, not stopped first; the edited conffile kept; $(rules) rules"

# --- remove ---------------------------------------------------------------
mkdir -p "$ROOT/run/ftpct" "$ROOT/var/lib/ftpct"
m=$(mark)
dpkg_root -r ftpct
[[ $(status) == "deinstall ok config-files 0.1.0-2" ]] || die "after remove: $(status)"
expect_call "$m" deb-systemd-invoke stop ftpct.service
[[ ! -e $ROOT/usr/sbin/ftpct ]] || die "the binary is still there"
[[ -f $ROOT/etc/ftpct/ftpct.toml ]] || die "remove took the conffile"
(($(rules) == 0)) || die "rules left after remove: $(in_ns iptables-save -t raw | grep ftpct)"
ok "remove: $(status); stopped; binary gone, conffile kept; no rule left"

# --- purge ----------------------------------------------------------------
m=$(mark)
dpkg_root -P ftpct
[[ $(status) == "unknown" || $(status) == "not-installed"* ]] || die "after purge: $(status)"
expect_call "$m" deb-systemd-helper purge ftpct.service
for f in etc/ftpct/ftpct.toml run/ftpct var/lib/ftpct; do
    [[ ! -e $ROOT/$f ]] || die "purge left $f"
done
ok "purge: the conffile, /run/ftpct and /var/lib/ftpct gone; the unit's state purged"
((KEEP)) && log "kept: $WORK"
log "all passed"
