# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ftpct_global_optspecs
    string join \n h/help V/version
end

function __fish_ftpct_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ftpct_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ftpct_using_subcommand
    set -l cmd (__fish_ftpct_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ftpct -n "__fish_ftpct_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_needs_command" -s V -l version -d 'Print version'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "replay" -d 'Replay a capture taken on the inside of a gateway through the engine'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "monitor" -d 'Watch an interface and print what ftpct would decide, read-only'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "status" -d 'What a running `ftpct run` holds: control connections with their NAT mapping and rewrites, pending expectations, counters'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "run" -d 'Run the helper on this gateway: bind NFQUEUE queue(s) and help FTP'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "rules" -d 'Print, apply or remove the iptables/ip6tables rules and ipsets'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "doctor" -d 'What this machine lacks for ftpct, and what to do'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "config" -d 'The configuration file: `check` prints the configuration in force'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "generate" -d 'Man pages and shell completions (for packages)'
complete -c ftpct -n "__fish_ftpct_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l snat -d 'Source NAT: hosts in CIDR leave as ADDR (MASQUERADE); repeatable' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l dnat -d 'Destination NAT: PUBLIC[:PORT] leads to PRIVATE[:PORT]; repeatable' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l out -d 'Write the far side of the gateway to this pcap' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l html -d 'Draw every FTP session as a ladder diagram in this HTML file: inside host, gateway and outside host as columns, time going down; each segment as captured and as on the far side of the gateway (flags, seq/ack, payload), rewrites before and after with the changed bytes marked, sequence shifts, expectations, matched data connections and refusals. One self-contained page (no script, nothing fetched), readable offline and printable' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l control-ports -d 'Control-channel ports, comma-separated: 1 to 64 ports, each 1 to 65535, none twice' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l allow-fxp -d 'Allow announcements of third-party addresses in CIDR (FXP); repeatable [file: policy.allow_fxp]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l min-data-port -d 'Refuse data ports below this (bounce attacks on 25 and friends), 1024 to 65535 [file: policy.min_data_port; default: 1024]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l expect-timeout -d 'Seconds a pending data connection is expected, 1 to 3600 [file: policy.expect_timeout; default: 300]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l max-expect-per-session -d 'Pending data connections per control connection, 1 to 1024 (beyond it the oldest makes room, as in the kernel) [file: policy.max_expect_per_session; default: 16]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l max-line -d 'Longest control line parsed, 128 to 8192 bytes (each direction of each session buffers up to this much); longer lines pass unchanged [file: max_line; default: 1024]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l json -d 'One JSON object per event instead of a table'
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -l selective -d 'Show only what the live gateway\'s engine sees under selective queueing: segments the kernel\'s rules would not queue pass without a decision (by default the engine sees every packet)'
complete -c ftpct -n "__fish_ftpct_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -s i -l interface -d 'Interface to watch (a gateway\'s inside interface, or a mirror port)' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l snat -d 'Source NAT the gateway does: hosts in CIDR leave as ADDR; repeatable' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l dnat -d 'Destination NAT the gateway does: PUBLIC[:PORT] leads to PRIVATE[:PORT]; repeatable' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l write -d 'Also write the frames seen to this pcap file' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l html -d 'When stopped, draw every FTP session seen as a ladder diagram in this HTML file (as `ftpct replay --html`: inside host, gateway, outside host, each segment on both sides, rewrites, expectations, matches, refusals). Self-contained, readable offline; at most 50000 segments and events are drawn' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l control-ports -d 'Control-channel ports, comma-separated: 1 to 64 ports, each 1 to 65535, none twice' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l allow-fxp -d 'Announcements of third-party addresses in CIDR are not alerts (FXP); repeatable' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l min-data-port -d 'Data ports below this are refused (bounce attacks on 25 and friends), 1024 to 65535' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l log-format -d 'Log format of the alerts (standard error)' -r -f -a "text\t'Lines for people'
json\t'One JSON object per line, for log collectors'"
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l json -d 'One JSON object per event instead of a table'
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -l no-promiscuous -d 'Only frames to and from this host (no promiscuous mode)'
complete -c ftpct -n "__fish_ftpct_using_subcommand monitor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_using_subcommand status" -l socket -d 'Where `ftpct run` answers: @NAME (abstract, this network namespace\'s) or PATH [default: the configuration\'s status_socket, @ftpct-status]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand status" -l config -d 'Configuration file (TOML) [default: /etc/ftpct/ftpct.toml, which may be absent: the defaults then; a PATH given must exist]; the flags override what it says' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand status" -l json -d 'The JSON snapshot instead of tables'
complete -c ftpct -n "__fish_ftpct_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l config -d 'Configuration file (TOML) [default: /etc/ftpct/ftpct.toml, which may be absent: the defaults then; a PATH given must exist]; the flags override what it says' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l queues -l queue -d 'NFQUEUE queues: N, FIRST:LAST or N,M,..., 1 to 64 queues (a thread each) [file: queues; default: 0] (`--queue` and `--queue-balance` are the same flag; repeatable)' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l control-ports -d 'Control-channel ports, comma-separated: 1 to 64 ports, each 1 to 65535, none twice [file: control_ports; default: 21]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l ipset -d 'ipsets: NAME (IPv4) and NAME6 (IPv6) of expected data connections, NAME-guard and NAME-guard6 of the directions ftpct follows [file: ipset; default: ftpct]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l mark -d 'Conntrack mark for data connections (bits outside MASK are inherited from the control connection) [file: mark]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l state-interval -d 'Log a `state:` line every SECS seconds: flows, pending expectations, ipset entries and the counters; 0 to 86400 (0: never) [file: state_interval; default: 0]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l realtime-priority -d 'Real-time (SCHED_RR) priority of ftpct\'s threads, 0 to 99, so that queued packets do not wait behind busy processes on a gateway whose CPUs are saturated (the kernel\'s helper runs ahead of every process); 0 keeps the normal scheduler [file: realtime_priority; default: 0]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l busy-poll -d 'Microseconds a queue thread keeps polling its empty queue before it sleeps, 0 to 10000: the next packet then needs no wake-up (on a virtual machine a wake-up on another CPU can cost ~100 us per crossing), at the price of a CPU kept busy meanwhile; 0 sleeps at once [file: busy_poll; default: 0]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l metrics -d 'Serve Prometheus metrics at http://ADDR:PORT/metrics (PORT 1 to 65535) [file: metrics]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l socket -d 'Where `ftpct status` asks: @NAME, an abstract unix socket (one per network namespace; root or ftpct\'s own user only), or PATH, a file (mode 0600) [file: status_socket; default: @ftpct-status]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l conntrack-zone -d 'The conntrack zone of the FTP connections, 0 to 65535: the zone your raw-table rules give them (`-j CT --zone N`, both directions); ftpct looks their entries up, re-creates them and makes their data connections\' entries there. One zone per ftpct [file: conntrack_zone; default: 0]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l log-format -d 'Log format' -r -f -a "text\t'Lines for people'
json\t'One JSON object per line, for log collectors'"
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l allow-fxp -d 'Allow announcements of third-party addresses in CIDR (FXP); repeatable [file: policy.allow_fxp]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l min-data-port -d 'Refuse data ports below this (bounce attacks on 25 and friends), 1024 to 65535 [file: policy.min_data_port; default: 1024]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l expect-timeout -d 'Seconds a pending data connection is expected, 1 to 3600 [file: policy.expect_timeout; default: 300]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l max-expect-per-session -d 'Pending data connections per control connection, 1 to 1024 (beyond it the oldest makes room, as in the kernel) [file: policy.max_expect_per_session; default: 16]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l max-line -d 'Longest control line parsed, 128 to 8192 bytes (each direction of each session buffers up to this much); longer lines pass unchanged [file: max_line; default: 1024]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l queue-all -d 'Queue every control-channel packet, as before selective queueing (for comparison, or a kernel without xt_string, xt_bpf or u32) [file: queue_all = true; default: false]'
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l selective -d 'Queue only the segments that can hold part of an announcement, AUTH or a multi-line reply, or that end inside a line, and every segment of a connection while ftpct needs it (the default). `rules` and `run` must agree [file: queue_all = false]'
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -l no-restore-rules -d 'Do not put ftpct\'s rules back when a firewall reload takes them (they are then looked at every 30 s and their absence logged) [file: restore_rules = false; default: true]'
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -s v -l verbose -d 'More logs: -v every packet, -vv everything'
complete -c ftpct -n "__fish_ftpct_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l family -d 'Address family' -r -f -a "4\t'IPv4 only (iptables)'
6\t'IPv6 only (ip6tables)'
all\t'Both'"
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l config -d 'Configuration file (TOML) [default: /etc/ftpct/ftpct.toml, which may be absent: the defaults then; a PATH given must exist]; the flags override what it says' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l queues -l queue -d 'NFQUEUE queues: N, FIRST:LAST or N,M,..., 1 to 64 queues (a thread each) [file: queues; default: 0] (`--queue` and `--queue-balance` are the same flag; repeatable)' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l control-ports -d 'Control-channel ports, comma-separated: 1 to 64 ports, each 1 to 65535, none twice [file: control_ports; default: 21]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l ipset -d 'ipsets: NAME (IPv4) and NAME6 (IPv6) of expected data connections, NAME-guard and NAME-guard6 of the directions ftpct follows [file: ipset; default: ftpct]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l queue-all -d 'Queue every control-channel packet, as before selective queueing (for comparison, or a kernel without xt_string, xt_bpf or u32) [file: queue_all = true; default: false]'
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l selective -d 'Queue only the segments that can hold part of an announcement, AUTH or a multi-line reply, or that end inside a line, and every segment of a connection while ftpct needs it (the default). `rules` and `run` must agree [file: queue_all = false]'
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l apply -d 'Add the rules and sets that are missing'
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l delete -d 'Remove them (and the raw table, if ftpct created it and it is empty); refused while a program reads ftpct\'s queues (`ftpct run` would put the rules back within a second): stop it first'
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l force -d 'With --delete: remove them even while a program reads the queues'
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -l explain -d 'Print what must cross to ftpct and why, and what each BPF program of the rules (named in their comments) lets pass'
complete -c ftpct -n "__fish_ftpct_using_subcommand rules" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -l config -d 'Configuration file (TOML) [default: /etc/ftpct/ftpct.toml, which may be absent: the defaults then; a PATH given must exist]; the flags override what it says' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -l queues -l queue -d 'NFQUEUE queues: N, FIRST:LAST or N,M,..., 1 to 64 queues (a thread each) [file: queues; default: 0] (`--queue` and `--queue-balance` are the same flag; repeatable)' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -l control-ports -d 'Control-channel ports, comma-separated: 1 to 64 ports, each 1 to 65535, none twice [file: control_ports; default: 21]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -l ipset -d 'ipsets: NAME (IPv4) and NAME6 (IPv6) of expected data connections, NAME-guard and NAME-guard6 of the directions ftpct follows [file: ipset; default: ftpct]' -r
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -l queue-all -d 'Queue every control-channel packet, as before selective queueing (for comparison, or a kernel without xt_string, xt_bpf or u32) [file: queue_all = true; default: false]'
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -l selective -d 'Queue only the segments that can hold part of an announcement, AUTH or a multi-line reply, or that end inside a line, and every segment of a connection while ftpct needs it (the default). `rules` and `run` must agree [file: queue_all = false]'
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -l json -d 'One JSON object per finding'
complete -c ftpct -n "__fish_ftpct_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c ftpct -n "__fish_ftpct_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Read the file, apply the defaults and print the result (TOML), or the error'
complete -c ftpct -n "__fish_ftpct_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ftpct -n "__fish_ftpct_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Configuration file (TOML) [default: /etc/ftpct/ftpct.toml, which may be absent: the defaults then; a PATH given must exist]; the flags override what it says' -r -F
complete -c ftpct -n "__fish_ftpct_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ftpct -n "__fish_ftpct_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Read the file, apply the defaults and print the result (TOML), or the error'
complete -c ftpct -n "__fish_ftpct_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -s h -l help -d 'Print help'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "man" -d 'Write ftpct.8, a page per subcommand and ftpct.toml.5 into DIR'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "completions" -d 'Print the completion script of SHELL'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and __fish_seen_subcommand_from man" -s h -l help -d 'Print help'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and __fish_seen_subcommand_from completions" -s h -l help -d 'Print help'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "man" -d 'Write ftpct.8, a page per subcommand and ftpct.toml.5 into DIR'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "completions" -d 'Print the completion script of SHELL'
complete -c ftpct -n "__fish_ftpct_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "replay" -d 'Replay a capture taken on the inside of a gateway through the engine'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "monitor" -d 'Watch an interface and print what ftpct would decide, read-only'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "status" -d 'What a running `ftpct run` holds: control connections with their NAT mapping and rewrites, pending expectations, counters'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "run" -d 'Run the helper on this gateway: bind NFQUEUE queue(s) and help FTP'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "rules" -d 'Print, apply or remove the iptables/ip6tables rules and ipsets'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "doctor" -d 'What this machine lacks for ftpct, and what to do'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "config" -d 'The configuration file: `check` prints the configuration in force'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "generate" -d 'Man pages and shell completions (for packages)'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and not __fish_seen_subcommand_from replay monitor status run rules doctor config generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Read the file, apply the defaults and print the result (TOML), or the error'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "man" -d 'Write ftpct.8, a page per subcommand and ftpct.toml.5 into DIR'
complete -c ftpct -n "__fish_ftpct_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "completions" -d 'Print the completion script of SHELL'
