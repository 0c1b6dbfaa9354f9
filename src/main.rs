//! The `ftpct` command: thin drivers around the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ftpct::cli::config::{
    self, ConfigError, ConfigPath, PolicyFlags, QueueFlags, RunFlags, Settings,
};
use ftpct::cli::logging::{self, LogFormat};
use ftpct::cli::report::{self, FlowNames};
use ftpct::cli::{exit, generate, permission};
use ftpct::daemon;
use ftpct::ladder;
use ftpct::netfilter::chains;
use ftpct::netfilter::family::Families;
use ftpct::netfilter::iptables;
use ftpct::netfilter::rules::{Action, RuleSet};
use ftpct::netfilter::sets::{self, SetNames};
use ftpct::offline::capture;
use ftpct::offline::replay;
use ftpct_engine::engine::Config;
use ftpct_engine::nat::{DnatRule, SnatRule};

#[derive(Parser)]
#[command(
    name = "ftpct",
    version,
    about = "Userspace FTP connection tracking and NAT helper for Linux (NFQUEUE)",
    long_about = "ftpct follows FTP control connections (PORT, EPRT, 227, 229; IPv4 and IPv6), \
rewrites the addresses they announce when the gateway does NAT, fixes TCP sequence numbers, \
and makes the announced data connections pass as RELATED through conntrack.\n\n\
`ftpct replay` runs a capture through the same engine offline.",
    after_help = exit::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a capture taken on the inside of a gateway through the engine
    ///
    /// Prints every decision (lines, expectations with their NAT bindings,
    /// rewrites, data connections matched, refusals). With --out, writes the
    /// capture as the far side of the gateway would see it; with --html,
    /// draws each session as a ladder diagram.
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
        /// Draw every FTP session as a ladder diagram in this HTML file:
        /// inside host, gateway and outside host as columns, time going
        /// down; each segment as captured and as on the far side of the gateway
        /// (flags, seq/ack, payload), rewrites before and after with the
        /// changed bytes marked, sequence shifts, expectations, matched
        /// data connections and refusals. One self-contained page (no
        /// script, nothing fetched), readable offline and printable
        #[arg(long, value_name = "FILE.html")]
        html: Option<PathBuf>,
        /// One JSON object per event instead of a table
        #[arg(long)]
        json: bool,
        /// Control-channel ports, comma-separated: 1 to 64 ports, each 1 to
        /// 65535, none twice
        #[arg(long, value_delimiter = ',', default_value = "21")]
        control_ports: Vec<u16>,
        /// Show only what the live gateway's engine sees under selective
        /// queueing: segments the kernel's rules would not queue pass
        /// without a decision (by default the engine sees every packet)
        #[arg(long)]
        selective: bool,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Watch an interface and print what ftpct would decide, read-only
    ///
    /// The engine on the frames a gateway interface or a mirror port sees
    /// (AF_PACKET, needs CAP_NET_RAW only): the decision lines of `ftpct
    /// replay`, alerts (standard error) for refused announcements. No
    /// verdict, no kernel change. Stops on SIGINT or SIGTERM.
    Monitor(ftpct::cli::monitor::MonitorArgs),
    /// What a running `ftpct run` holds: control connections with their
    /// NAT mapping and rewrites, pending expectations, counters
    ///
    /// Asks its unix socket (root only). Expectations are listed in the
    /// layout of `conntrack -L expect`.
    Status(ftpct::cli::status::StatusArgs),
    /// Run the helper on this gateway: bind NFQUEUE queue(s) and help FTP
    ///
    /// Needs CAP_NET_ADMIN (root, or the capability alone) and the rules of
    /// `ftpct rules --apply`. Stops cleanly on SIGINT or SIGTERM (queues
    /// released, ipset entries removed); SIGHUP reloads the policy
    /// (min_data_port, allow_fxp, expect_timeout, max_expect_per_session)
    /// from the configuration file. Under systemd: Type=notify, logs to
    /// the journal with their priorities.
    #[command(after_help = exit::HELP)]
    Run {
        #[command(flatten)]
        config: ConfigPath,
        #[command(flatten)]
        queues: QueueFlags,
        #[command(flatten)]
        run: RunFlags,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Print, apply or remove the iptables/ip6tables rules and ipsets
    ///
    /// Without --apply or --delete, prints the commands (a shell script).
    /// The rules go in the raw table, after your own raw rules.
    #[command(after_help = exit::HELP)]
    Rules {
        /// Address family
        #[arg(long, value_enum, default_value_t = Families::All)]
        family: Families,
        #[command(flatten)]
        config: ConfigPath,
        #[command(flatten)]
        queues: QueueFlags,
        /// Add the rules and sets that are missing
        #[arg(long, conflicts_with = "delete")]
        apply: bool,
        /// Remove them (and the raw table, if ftpct created it and it is
        /// empty); refused while a program reads ftpct's queues (`ftpct run`
        /// would put the rules back within a second): stop it first
        #[arg(long)]
        delete: bool,
        /// With --delete: remove them even while a program reads the queues
        #[arg(long, requires = "delete")]
        force: bool,
        /// Print what must cross to ftpct and why, and what each BPF
        /// program of the rules (named in their comments) lets pass
        #[arg(long, conflicts_with_all = ["apply", "delete"])]
        explain: bool,
    },
    /// What this machine lacks for ftpct, and what to do
    ///
    /// Looks at the running kernel (the iptables matches and targets the
    /// rules use, conntrack, ctnetlink, NAT, NFQUEUE, the ipset types), the
    /// rules in place and their order, a kernel FTP helper attached to the
    /// same connections, and the queues. Changes nothing. Exit 0 when
    /// nothing is missing, 69 when something is (each says what to do), 77
    /// without CAP_NET_ADMIN.
    #[command(after_help = exit::HELP)]
    Doctor {
        #[command(flatten)]
        config: ConfigPath,
        #[command(flatten)]
        queues: QueueFlags,
        /// One JSON object per finding
        #[arg(long)]
        json: bool,
    },
    /// The configuration file: `check` prints the configuration in force
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Man pages and shell completions (for packages)
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Read the file, apply the defaults and print the result (TOML), or the error
    ///
    /// An error names the line, the column and the key; every number has a
    /// range (e.g. max_line 128 to 8192 bytes; the packaged
    /// /etc/ftpct/ftpct.toml and the README list them), a value outside it
    /// names the key, the value and the range. A --config PATH that does not exist is an error. Exit 78
    /// on any of these.
    Check {
        #[command(flatten)]
        config: ConfigPath,
    },
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Write ftpct.8, a page per subcommand and ftpct.toml.5 into DIR
    Man { dir: PathBuf },
    /// Print the completion script of SHELL
    Completions { shell: clap_complete::Shell },
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

/// An error and the exit code it means (see `exit`).
struct Failure {
    code: u8,
    error: Box<dyn std::error::Error>,
}

impl Failure {
    fn new(code: u8, error: impl Into<Box<dyn std::error::Error>>) -> Self {
        Failure {
            code,
            error: error.into(),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(exit::CONFIG, e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay {
            input,
            snat,
            dnat,
            out,
            html,
            json,
            control_ports,
            selective,
            policy,
        } => {
            let mut s = Settings {
                control_ports,
                queue_all: !selective,
                ..Settings::default()
            };
            policy.apply(&mut s);
            config::validate(&s).map_err(Failure::from).and_then(|()| {
                let files = ReplayFiles {
                    out: out.as_deref(),
                    html: html.as_deref(),
                };
                run_replay(&input, snat, dnat, files, json, s.engine_config())
                    .map_err(|e| Failure::new(exit::FAILURE, e))
            })
        }
        Command::Status(args) => {
            ftpct::cli::status::run(&args).map_err(|e| Failure::new(exit::of_status(&e), e))
        }
        Command::Monitor(args) => config::validate(&args.settings())
            .map_err(Failure::from)
            .and_then(|()| {
                ftpct::cli::monitor::run(args).map_err(|e| Failure::new(exit::of_monitor(&e), e))
            }),
        Command::Run {
            config,
            queues,
            run,
            log,
            policy,
        } => {
            logging::init_batched(log.log_format, log.verbose);
            let ran = run_daemon(&config, &queues, &run, &policy);
            // Every line of the run is written before ftpct says why it ended.
            ftpct::log_batch::flush();
            ran
        }
        Command::Rules { explain: true, .. } => {
            print_lines(&[ftpct::netfilter::programs::explain()]);
            Ok(())
        }
        Command::Rules {
            family,
            config,
            queues,
            apply,
            delete,
            force,
            explain: false,
        } => run_rules(
            family,
            &config,
            &queues,
            match (apply, delete, force) {
                (true, _, _) => Some(Action::Apply),
                (_, true, false) => Some(Action::Delete),
                (_, true, true) => Some(Action::ForceDelete),
                _ => None,
            },
        ),
        Command::Doctor {
            config,
            queues,
            json,
        } => run_doctor(&config, &queues, json),
        Command::Config(ConfigCommand::Check { config }) => settings(&config, |_| {})
            .map(|s| print!("{}", s.to_toml()))
            .map_err(Failure::from),
        Command::Generate(GenerateCommand::Man { dir }) => {
            generate::man_pages(<Cli as clap::CommandFactory>::command(), &dir)
                .map(|files| print_lines(&files))
                .map_err(|e| Failure::new(exit::FAILURE, e))
        }
        Command::Generate(GenerateCommand::Completions { shell }) => {
            generate::completions(<Cli as clap::CommandFactory>::command(), shell);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("ftpct: {}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// The file at `path`, then the flags over it, checked.
fn settings(path: &ConfigPath, flags: impl FnOnce(&mut Settings)) -> Result<Settings, ConfigError> {
    let mut s = path.file().load()?;
    flags(&mut s);
    config::validate(&s)?;
    Ok(s)
}

fn run_daemon(
    path: &ConfigPath,
    queues: &QueueFlags,
    run: &RunFlags,
    policy: &PolicyFlags,
) -> Result<(), Failure> {
    let s = settings(path, |s| {
        queues.apply(s);
        run.apply(s);
        policy.apply(s);
    })?;
    daemon::run(daemon::Options {
        queues: s.queues.list().to_vec(),
        config: s.engine_config(),
        label_bit: s.label_bit,
        ipset: s.ipset.clone(),
        state_interval: s.state_every(),
        realtime_priority: s.realtime_priority,
        busy_poll: std::time::Duration::from_micros(s.busy_poll),
        reload: Some(config::Reload {
            file: path.file(),
            flags: policy.clone(),
        }),
        metrics: s.metrics,
        status_socket: Some(s.status_socket.clone()),
        restore_rules: match s.restore_rules {
            true => Some(rule_set(Families::All, &s)?),
            false => None,
        },
        conntrack_zone: s.conntrack_zone,
    })
    .map_err(|e| Failure::new(exit::of_daemon(&e), e))
}

/// What `ftpct replay` writes besides its report.
struct ReplayFiles<'a> {
    /// The far side, as a pcap.
    out: Option<&'a std::path::Path>,
    /// The ladder diagram.
    html: Option<&'a std::path::Path>,
}

fn run_replay(
    input: &std::path::Path,
    snat: Vec<SnatRule>,
    dnat: Vec<DnatRule>,
    files: ReplayFiles<'_>,
    json: bool,
    cfg: Config,
) -> Result<(), Box<dyn std::error::Error>> {
    let out = files.out;
    let capture = capture::read(input)?;
    let mut recorder = files.html.map(|_| ladder::Recorder::new());
    let replayed = match recorder.as_mut() {
        Some(rec) => replay::replay_watched(&capture, snat, dnat, cfg, rec),
        None => replay::replay(&capture, snat, dnat, cfg),
    };
    if let (Some(path), Some(rec)) = (files.html, &recorder) {
        let heading = ladder::Heading {
            title: command_line(),
            lines: vec![format!("summary: {}", replayed.stats)],
        };
        ladder::write(path, rec, &heading)?;
    }
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
        if let Some(path) = files.html {
            println!("ladder diagram written to {}", path.display());
        }
    }
    Ok(())
}

/// The command line as given, for the page's heading.
fn command_line() -> String {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    std::iter::once("ftpct".to_string())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_doctor(path: &ConfigPath, queues: &QueueFlags, json: bool) -> Result<(), Failure> {
    let s = settings(path, |s| queues.apply(s))?;
    permission::need_net_admin("ftpct doctor").map_err(|e| Failure::new(exit::NO_PERMISSION, e))?;
    let rs = rule_set(Families::All, &s)?;
    let findings = ftpct::doctor::examine(&rs, s.queues.list());
    let lines: Vec<String> = findings
        .iter()
        .map(|f| {
            if json {
                serde_json::to_string(f).unwrap_or_default()
            } else {
                f.to_string()
            }
        })
        .collect();
    print_lines(&lines);
    if ftpct::doctor::healthy(&findings) {
        Ok(())
    } else {
        Err(Failure::new(
            exit::KERNEL,
            "something ftpct needs is missing (see above)",
        ))
    }
}

/// The rules and sets of the settings, for `families`.
fn rule_set(families: Families, s: &Settings) -> Result<RuleSet, Failure> {
    Ok(RuleSet {
        families: families.list(),
        queue: s.queues.target()?,
        control_ports: s.control_ports.clone(),
        sets: SetNames::new(&s.ipset).map_err(|e| Failure::new(exit::CONFIG, e))?,
        queue_all: s.queue_all,
    })
}

fn run_rules(
    family: Families,
    path: &ConfigPath,
    queues: &QueueFlags,
    action: Option<Action>,
) -> Result<(), Failure> {
    let s = settings(path, |s| queues.apply(s))?;
    let rs = rule_set(family, &s)?;
    let kernel = |e: Box<dyn std::error::Error>| Failure::new(exit::KERNEL, e);
    let log = match action {
        None => vec![chains::render_apply(&rs)],
        Some(action) => {
            let command = match action {
                Action::Apply => "ftpct rules --apply",
                Action::Delete | Action::ForceDelete => "ftpct rules --delete",
            };
            permission::need_net_admin(command)
                .map_err(|e| Failure::new(exit::NO_PERMISSION, e))?;
            if action == Action::Delete {
                refuse_while_read(&rs)?;
            }
            change_rules(&rs, action).map_err(kernel)?
        }
    };
    print_lines(&log);
    Ok(())
}

/// `--delete` while a program reads ftpct's queues: `ftpct run` would put
/// the rules back within a second (and a program reading them expects
/// packets), so the deletion is refused, saying what to do.
fn refuse_while_read(rs: &RuleSet) -> Result<(), Failure> {
    let bound: Vec<u16> = ftpct::netfilter::queue_stats::read()
        .unwrap_or_default()
        .iter()
        .map(|q| q.queue)
        .filter(|q| rs.queue.queues().contains(q))
        .collect();
    if bound.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        exit::FAILURE,
        format!(
            "a program reads queue(s) {bound:?} (ftpct run?), which puts ftpct's rules back within a second: stop it first (systemctl stop ftpct), or `ftpct rules --delete --force` (a running ftpct then puts them back unless it runs with restore_rules = false)"
        ),
    ))
}

/// Applies or deletes: sets before the rules that name them, and after
/// the rules on the way out.
fn change_rules(rs: &RuleSet, action: Action) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut sys = iptables::System;
    Ok(match action {
        Action::Apply => {
            let mut log = sets::apply_sets(&rs.sets, &rs.families)?;
            log.extend(iptables::change_rules(&mut sys, rs, Action::Apply)?);
            log
        }
        Action::Delete | Action::ForceDelete => {
            let mut log = iptables::change_rules(&mut sys, rs, Action::Delete)?;
            log.extend(sets::delete_sets(&rs.sets, &rs.families)?);
            log
        }
    })
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
