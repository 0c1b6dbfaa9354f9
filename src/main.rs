//! The `ftpct` command: thin drivers around the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ftpct::cli::logging::{self, LogFormat};
use ftpct::cli::report::{self, FlowNames};
use ftpct::daemon;
use ftpct::netfilter::iptables;
use ftpct::netfilter::rules::{self, Action, Families, QueueTarget, RuleSet};
use ftpct::netfilter::sets::{self, SetNames};
use ftpct::offline::capture;
use ftpct::offline::replay;
use ftpct_engine::command::Mark;
use ftpct_engine::engine::Config;
use ftpct_engine::nat::{DnatRule, SnatRule};
use ftpct_engine::policy::Policy;

#[derive(Parser)]
#[command(
    name = "ftpct",
    version,
    about = "Userspace FTP connection tracking and NAT helper for Linux (NFQUEUE)",
    long_about = "ftpct follows FTP control connections (PORT, EPRT, 227, 229; IPv4 and IPv6), \
rewrites the addresses they announce when the gateway does NAT, fixes TCP sequence numbers, \
and makes the announced data connections pass as RELATED through conntrack.\n\n\
`ftpct replay` runs a capture through the same engine offline."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct PolicyArgs {
    /// Control-channel ports (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "21")]
    control_ports: Vec<u16>,
    /// Allow announcements of third-party addresses in CIDR (FXP); repeatable
    #[arg(long = "allow-fxp", value_name = "CIDR")]
    allow_fxp: Vec<ipnet::IpNet>,
    /// Refuse data ports below this (bounce attacks on 25 and friends)
    #[arg(long, default_value_t = 1024)]
    min_data_port: u16,
    /// Seconds a pending data connection is expected
    #[arg(long, default_value_t = 300)]
    expect_timeout: u64,
    /// Pending data connections per control connection (beyond it the oldest makes room, as in the kernel)
    #[arg(long, default_value_t = 16)]
    max_expect_per_session: usize,
    /// Longest control line parsed, in bytes; longer lines pass unchanged
    #[arg(long, default_value_t = 1024)]
    max_line: usize,
}

impl PolicyArgs {
    fn config(&self) -> Config {
        Config {
            control_ports: self.control_ports.clone(),
            max_line: self.max_line,
            expect_timeout: std::time::Duration::from_secs(self.expect_timeout),
            max_expect_per_session: self.max_expect_per_session,
            policy: Policy {
                min_data_port: self.min_data_port,
                allow_fxp: self.allow_fxp.clone(),
            },
            ..Config::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Replay a capture taken on the inside of a gateway through the engine
    ///
    /// Prints every decision (lines, expectations with their NAT bindings,
    /// rewrites, data connections matched, refusals). With --out, writes the
    /// capture as the far side of the gateway would see it.
    Replay {
        /// Capture (pcap: Ethernet, raw IP, Linux SLL or SLL2), taken on the
        /// side of the NATed hosts
        input: PathBuf,
        /// Source NAT: hosts in CIDR leave as ADDR (MASQUERADE); repeatable
        #[arg(long, value_name = "CIDR=ADDR")]
        snat: Vec<SnatRule>,
        /// Destination NAT: PUBLIC[:PORT] leads to PRIVATE[:PORT]; repeatable
        #[arg(long, value_name = "PUBLIC[:PORT]=PRIVATE[:PORT]")]
        dnat: Vec<DnatRule>,
        /// Write the far side of the gateway to this pcap
        #[arg(long, value_name = "OUTPUT.pcap")]
        out: Option<PathBuf>,
        /// One JSON object per event instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Run the helper on this gateway: bind NFQUEUE queue(s) and help FTP
    ///
    /// Needs root and the rules of `ftpct rules --apply`. Stops cleanly on
    /// SIGINT or SIGTERM (queues released, ipset entries removed).
    Run {
        /// NFQUEUE queue to bind; repeatable (one thread each, e.g. for
        /// `ftpct rules --queue-balance 0:1`: --queue 0 --queue 1)
        #[arg(
            long = "queue",
            value_name = "N",
            value_delimiter = ',',
            default_value = "0"
        )]
        queues: Vec<u16>,
        /// Conntrack mark for data connections (bits outside MASK are
        /// inherited from the control connection)
        #[arg(long, value_name = "VALUE[/MASK]")]
        mark: Option<Mark>,
        /// ipset of expected data connections (NAME for IPv4, NAME6 for IPv6)
        #[arg(long, value_name = "NAME", default_value = rules::DEFAULT_SET)]
        ipset: String,
        /// Log a `state:` line every SECS seconds: flows, pending
        /// expectations, ipset entries and the counters (0: never).
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        state_interval: u64,
        /// Real-time (SCHED_RR) priority of ftpct's threads, 1-99, so that
        /// queued packets do not wait behind busy processes on a gateway
        /// whose CPUs are saturated (the kernel's helper runs ahead of every
        /// process); 0, the default, keeps the normal scheduler.
        #[arg(long, value_name = "PRIO", default_value_t = 0,
              value_parser = clap::value_parser!(u8).range(0..=99))]
        realtime_priority: u8,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Print, apply or remove the iptables/ip6tables rules and ipsets
    ///
    /// Without --apply or --delete, prints the commands (a shell script).
    /// The rules go in the raw table, after your own raw rules.
    Rules {
        /// Address family
        #[arg(long, value_enum, default_value_t = Families::All)]
        family: Families,
        /// NFQUEUE queue number
        #[arg(
            long,
            value_name = "N",
            default_value_t = 0,
            conflicts_with = "queue_balance"
        )]
        queue: u16,
        /// Spread over queues FIRST..LAST (run `ftpct run` with each)
        #[arg(long, value_name = "FIRST:LAST", value_parser = rules::parse_balance)]
        queue_balance: Option<QueueTarget>,
        /// Control-channel ports (comma-separated)
        #[arg(long, value_delimiter = ',', default_value = "21")]
        control_ports: Vec<u16>,
        /// ipset of expected data connections (NAME for IPv4, NAME6 for IPv6)
        #[arg(long, value_name = "NAME", default_value = rules::DEFAULT_SET)]
        ipset: String,
        /// Add the rules and sets that are missing
        #[arg(long, conflicts_with = "delete")]
        apply: bool,
        /// Remove them (and the raw table, if ftpct created it and it is empty)
        #[arg(long)]
        delete: bool,
    },
}

#[derive(clap::Args, Clone)]
struct LogArgs {
    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More logs: -v every packet, -vv everything
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay {
            input,
            snat,
            dnat,
            out,
            json,
            policy,
        } => run_replay(&input, snat, dnat, out.as_deref(), json, policy.config()),
        Command::Run {
            queues,
            mark,
            ipset,
            state_interval,
            realtime_priority,
            log,
            policy,
        } => {
            logging::init(log.log_format, log.verbose);
            daemon::run(daemon::Options {
                queues,
                config: Config {
                    data_mark: mark,
                    ..policy.config()
                },
                ipset,
                state_interval: (state_interval > 0)
                    .then(|| std::time::Duration::from_secs(state_interval)),
                realtime_priority,
            })
            .map_err(Into::into)
        }
        Command::Rules {
            family,
            queue,
            queue_balance,
            control_ports,
            ipset,
            apply,
            delete,
        } => run_rules(
            family,
            queue_balance.unwrap_or(QueueTarget::Num(queue)),
            control_ports,
            &ipset,
            match (apply, delete) {
                (true, _) => Some(Action::Apply),
                (_, true) => Some(Action::Delete),
                _ => None,
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftpct: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_replay(
    input: &std::path::Path,
    snat: Vec<SnatRule>,
    dnat: Vec<DnatRule>,
    out: Option<&std::path::Path>,
    json: bool,
    cfg: Config,
) -> Result<(), Box<dyn std::error::Error>> {
    let capture = capture::read(input)?;
    let replayed = replay::replay(&capture, snat, dnat, cfg);
    let start = capture.frames.first().map(|f| f.time).unwrap_or_default();
    let mut names = FlowNames::default();
    for te in &replayed.events {
        if json {
            println!("{}", report::event_json(te.time, &te.event));
        } else {
            println!(
                "{}",
                report::table_row(&mut names, start, te.time, &te.event)
            );
        }
    }
    if let Some(path) = out {
        capture::write(path, capture.datalink, &replayed.far_side)?;
    }
    for m in &replayed.mismatches {
        let at = m.time.saturating_sub(start).as_secs_f64();
        eprintln!("mismatch: {at:.6} {m}");
    }
    if !json {
        println!("summary: {}", replayed.stats);
        if !replayed.mismatches.is_empty() {
            println!(
                "{} packet(s) toward the inside differ from the capture after the engine's verdict",
                replayed.mismatches.len()
            );
        }
        if let Some(path) = out {
            println!("far side written to {}", path.display());
        }
    }
    Ok(())
}

fn run_rules(
    family: Families,
    queue: QueueTarget,
    control_ports: Vec<u16>,
    ipset: &str,
    action: Option<Action>,
) -> Result<(), Box<dyn std::error::Error>> {
    let rs = RuleSet {
        families: family.list(),
        queue,
        control_ports,
        sets: SetNames::new(ipset)?,
    };
    let log = match action {
        None => vec![rules::render_apply(&rs)],
        // Sets before the rules that name them, and after the rules on the way out.
        Some(Action::Apply) => {
            let mut log = sets::apply_sets(&rs)?;
            log.extend(iptables::change_rules(
                &mut iptables::System,
                &rs,
                Action::Apply,
            )?);
            log
        }
        Some(Action::Delete) => {
            let mut log = iptables::change_rules(&mut iptables::System, &rs, Action::Delete)?;
            log.extend(sets::delete_sets(&rs)?);
            log
        }
    };
    print_lines(&log);
    Ok(())
}

/// Prints to stdout; a closed pipe (`| head`) just ends the output.
fn print_lines(lines: &[String]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for l in lines {
        let line = l.strip_suffix('\n').unwrap_or(l);
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
}
