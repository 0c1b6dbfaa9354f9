#!/usr/bin/env bash
# The engine crate must stay sans-IO: it builds alone, and nothing that
# talks to the kernel, parses a command line or writes logs is in its
# dependency tree. Fails, naming the crate, when one creeps in.
set -euo pipefail
cd "$(dirname "$0")/.."

FORBIDDEN='nfq netlink-sys netlink-packet-core netlink-packet-netfilter socket2 libc clap tracing-subscriber pnet pcap-file serde_json mio tokio'

cargo build --locked --quiet -p ftpct-engine
tree=$(cargo tree --locked -p ftpct-engine -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
bad=0
for c in $FORBIDDEN; do
    if grep -qx "$c" <<<"$tree"; then
        echo "check-engine-deps: ftpct-engine depends on $c (an I/O or CLI crate); keep it in the ftpct crate" >&2
        bad=1
    fi
done
((bad == 0)) || exit 1
echo "check-engine-deps: ftpct-engine builds alone; its dependencies: $(tr '\n' ' ' <<<"$tree")"
