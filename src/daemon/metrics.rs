//! The daemon's metrics, in Prometheus text (prometheus-client): what the
//! queue threads count as they go (verdicts, handling time, packets
//! received, conntrack lookups), what the events tell (refusals by rule,
//! expectations evicted), reloads, and, at each scrape, the engine's
//! counters and tables, the kernel's queue figures, the netlink failures
//! and the process's own figures. Every labelled series exists from the
//! start, at zero; no value stands for "unknown".

mod process;
mod refusal_rules;
mod verdict_kind;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ftpct_engine::event::{Event, RemoveReason, Stats};
use ftpct_engine::Engine;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::netfilter::conntrack_lookup::LookupStats;
use crate::netfilter::netlink::NlCounters;
use crate::netfilter::op_errors::OpErrors;
use crate::netfilter::op_requests::OpRequests;
use crate::netfilter::queue_stats;
use refusal_rules::REFUSAL_RULES;
pub use verdict_kind::VerdictKind;

type Labels = [(&'static str, String); 1];

/// What the packet path and the event log count.
#[derive(Debug, Clone)]
pub struct Metrics {
    verdicts: Family<Labels, Counter>,
    received: Family<Labels, Counter>,
    handling: Histogram,
    refusals: Family<Labels, Counter>,
    evicted: Counter,
    /// Sessions ended by their client's FIN, read from the FIN sets.
    fins_believed: Counter,
    /// FIN set entries of followed sessions whose connection conntrack did
    /// not see close (a forged FIN, or a half-close that lasted).
    fins_refused: Counter,
    /// This run's queues that no raw-table rule feeds, at the last look
    /// that could read the rules.
    unfed_queues: Gauge,
    /// 1 if the last look at the rules could read them.
    rules_readable: Gauge,
    /// Times ftpct put its rules back after they were gone (a firewall
    /// reload).
    rules_restored: Counter,
    /// Control connections' entries made anew at their first rewrite, by
    /// outcome (done, failed).
    adoptions: Family<Labels, Counter>,
    /// SIGHUP reloads, by outcome (done, failed).
    reloads: Family<Labels, Counter>,
    /// 1 if the last reading of the configuration (at start or SIGHUP)
    /// was applied.
    reload_ok: Gauge,
    /// When the configuration was last applied (Unix seconds).
    reload_time: Gauge<f64, AtomicU64>,
    /// Conntrack questions asked, and answers taken from the cache.
    lookups: Counter,
    lookup_hits: Counter,
    /// When this process started (Unix seconds).
    started: f64,
    /// Netlink requests and failed requests, counted by the daemon's sockets.
    netlink: NlCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            verdicts: Family::default(),
            received: Family::default(),
            // 1 µs to about 0.5 s.
            handling: Histogram::new(exponential_buckets(1e-6, 2.0, 20)),
            refusals: Family::default(),
            evicted: Counter::default(),
            fins_believed: Counter::default(),
            fins_refused: Counter::default(),
            unfed_queues: Gauge::default(),
            rules_readable: Gauge::default(),
            rules_restored: Counter::default(),
            adoptions: Family::default(),
            reloads: Family::default(),
            reload_ok: Gauge::default(),
            reload_time: Gauge::default(),
            lookups: Counter::default(),
            lookup_hits: Counter::default(),
            started: process::now_unix(),
            netlink: NlCounters::default(),
        };
        m.every_series_at_zero();
        // The configuration was read and applied to start.
        m.reload_ok.set(1);
        m.reload_time.set(m.started);
        m
    }
}

/// One queue thread's handles on the metrics, made once: a packet then
/// costs a few atomic increments and a histogram observation, with no
/// label lookup or allocation.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// One counter per kind, in the order of `VerdictKind::ALL`.
    verdicts: [Counter; 4],
    received: Counter,
    handling: Histogram,
    lookups: Counter,
    lookup_hits: Counter,
    /// The thread's lookup figures already added to the counters.
    lookups_counted: LookupStats,
}

impl QueueMetrics {
    /// A packet got a verdict of `kind` after `took`.
    pub fn packet(&self, kind: VerdictKind, took: Duration) {
        let slot = VerdictKind::ALL.iter().position(|k| *k == kind);
        if let Some(c) = slot.and_then(|i| self.verdicts.get(i)) {
            c.inc();
        }
        self.received.inc();
        self.handling.observe(took.as_secs_f64());
    }

    /// The thread's lookup figures so far (`LiveNat::stats`): what is
    /// new since the last call is added.
    pub fn lookups(&mut self, now: LookupStats) {
        let before = self.lookups_counted;
        self.lookups
            .inc_by(now.queries.saturating_sub(before.queries));
        self.lookup_hits
            .inc_by(now.hits.saturating_sub(before.hits));
        self.lookups_counted = now;
    }
}

impl Metrics {
    /// Where the daemon's netlink sockets count their failed requests.
    pub fn netlink_errors(&self) -> Arc<OpErrors> {
        Arc::clone(&self.netlink.errors)
    }

    /// Where the daemon's netlink sockets count their requests and failures.
    pub fn netlink_counters(&self) -> NlCounters {
        self.netlink.clone()
    }

    /// The labelled series that events create, made at zero (each
    /// handle is dropped at once: the series stays in its family).
    fn every_series_at_zero(&self) {
        for rule in REFUSAL_RULES {
            let _ = self.refusals.get_or_create(&[("rule", rule.into())]);
        }
        for outcome in ["done", "failed"] {
            let _ = self.adoptions.get_or_create(&[("outcome", outcome.into())]);
            let _ = self.reloads.get_or_create(&[("outcome", outcome.into())]);
        }
        for kind in VerdictKind::ALL {
            self.verdict(kind);
        }
    }

    fn verdict(&self, kind: VerdictKind) -> Counter {
        self.verdicts
            .get_or_create(&[("kind", kind.label().into())])
            .clone()
    }

    /// The handles of the thread of `queue`.
    pub fn for_queue(&self, queue: u16) -> QueueMetrics {
        QueueMetrics {
            verdicts: VerdictKind::ALL.map(|k| self.verdict(k)),
            received: self
                .received
                .get_or_create(&[("queue", queue.to_string())])
                .clone(),
            handling: self.handling.clone(),
            lookups: self.lookups.clone(),
            lookup_hits: self.lookup_hits.clone(),
            lookups_counted: LookupStats::default(),
        }
    }

    /// A SIGHUP's reading of the configuration: applied, or refused (the
    /// policy in force kept).
    pub fn reloaded(&self, applied: bool) {
        let outcome = if applied { "done" } else { "failed" };
        self.reloads
            .get_or_create(&[("outcome", outcome.into())])
            .inc();
        self.reload_ok.set(i64::from(applied));
        if applied {
            self.reload_time.set(process::now_unix());
        }
    }

    /// What an event adds: refusals by rule, evicted expectations.
    pub fn event(&self, e: &Event) {
        match e {
            Event::Refused { refusal, .. } => {
                self.refusals
                    .get_or_create(&[("rule", refusal.rule().into())])
                    .inc();
            }
            Event::ExpectationRemoved {
                reason: RemoveReason::Evicted,
                ..
            } => {
                self.evicted.inc();
            }
            _ => {}
        }
    }

    /// A FIN set entry of a followed session: believed (conntrack took the
    /// FIN) or not.
    pub fn fin(&self, believed: bool) {
        if believed {
            self.fins_believed.inc();
        } else {
            self.fins_refused.inc();
        }
    }

    /// A control connection's entry made anew (`done`), or not.
    pub fn adoption(&self, done: bool) {
        let outcome = if done { "done" } else { "failed" };
        self.adoptions
            .get_or_create(&[("outcome", outcome.into())])
            .inc();
    }

    /// What the last look at the rules found: how many of this run's
    /// queues no rule feeds (None: the rules could not be read; the count
    /// of the last look that could is kept).
    pub fn queues_without_rule(&self, unfed: Option<usize>) {
        self.rules_readable.set(i64::from(unfed.is_some()));
        if let Some(n) = unfed {
            self.unfed_queues.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// ftpct put its rules of `restored` families back.
    pub fn rules_restored(&self, restored: usize) {
        self.rules_restored.inc_by(restored as u64);
    }

    fn received_by(&self, queue: u16) -> u64 {
        self.received
            .get_or_create(&[("queue", queue.to_string())])
            .get()
    }
}

/// The engine's figures a scrape shows: its counters and table sizes.
#[derive(Debug, Clone)]
pub struct EngineFigures {
    stats: Stats,
    flows: usize,
    pending: usize,
    dsts: usize,
}

impl EngineFigures {
    pub fn of(engine: &Engine) -> Self {
        EngineFigures {
            stats: engine.stats().clone(),
            flows: engine.flow_count(),
            pending: engine.expectation_count(),
            dsts: engine.pending_dst_count(),
        }
    }
}

/// Reads the engine's figures at a scrape; None when it cannot (the engine
/// panicked under its lock).
pub type ReadEngine = Box<dyn Fn() -> Option<EngineFigures> + Send + Sync>;

/// The registry a scrape encodes: the live metrics `m`, and the figures
/// read at each scrape: the engine's through `engine`, the kernel's for
/// `queues`.
pub fn registry(m: Metrics, engine: ReadEngine, queues: Vec<u16>) -> Registry {
    let mut r = Registry::default();
    let build: Family<[(&'static str, String); 1], Gauge> = Family::default();
    build
        .get_or_create(&[("version", env!("CARGO_PKG_VERSION").into())])
        .set(1);
    r.register(
        "ftpct_build_info",
        "The version of ftpct running (the value is always 1)",
        build,
    );
    r.register(
        "ftpct_verdicts",
        "Verdicts given to queued packets, by kind: accept (unchanged), rewritten (an announcement rewritten in it, as ftpct_rewrites_total counts), adjusted (headers only: sequence numbers fixed up, MSS clamped), drop",
        m.verdicts.clone(),
    );
    r.register(
        "ftpct_queue_received",
        "Packets ftpct received from each queue",
        m.received.clone(),
    );
    r.register(
        "ftpct_packet_handling_seconds",
        "Time from a packet's arrival in ftpct to its verdict (engine, conntrack questions, kernel commands)",
        m.handling.clone(),
    );
    r.register(
        "ftpct_refusals",
        "Announcements refused, by rule",
        m.refusals.clone(),
    );
    r.register(
        "ftpct_queues_without_rule",
        "This run's queues that no raw-table rule feeds: their packets never reach ftpct (ftpct rules --apply); at the last look that could read the rules",
        m.unfed_queues.clone(),
    );
    r.register(
        "ftpct_rules_readable",
        "1 if the last look at the raw table could read it (iptables-save), 0 if not (ftpct_queues_without_rule is then older)",
        m.rules_readable.clone(),
    );
    r.register(
        "ftpct_rules_restored",
        "Times `ftpct run` found its rules gone from a family's raw table (a firewall reload: nft flush ruleset, iptables-restore) and put them back (restore_rules = true)",
        m.rules_restored.clone(),
    );
    r.register(
        "ftpct_config_reloads",
        "SIGHUP readings of the configuration, by outcome (done; failed: the policy in force kept)",
        m.reloads.clone(),
    );
    r.register(
        "ftpct_config_last_reload_successful",
        "1 if the last reading of the configuration (start or SIGHUP) was applied",
        m.reload_ok.clone(),
    );
    r.register(
        "ftpct_config_last_reload_success_timestamp_seconds",
        "When the configuration was last applied (start or SIGHUP), Unix seconds",
        m.reload_time.clone(),
    );
    r.register(
        "ftpct_conntrack_lookups",
        "Conntrack questions asked for the NAT mapping of a connection ftpct does not follow yet",
        m.lookups.clone(),
    );
    r.register(
        "ftpct_conntrack_lookup_cache_hits",
        "NAT mappings answered from ftpct's short-lived cache instead of asking conntrack",
        m.lookup_hits.clone(),
    );
    r.register(
        "ftpct_expectations_evicted",
        "Pending data connections evicted to make room at the per-session limit",
        m.evicted.clone(),
    );
    r.register(
        "ftpct_session_fins",
        "Sessions ended by their client's FIN (noted unqueued in the FIN set) once conntrack saw the connection close",
        m.fins_believed.clone(),
    );
    r.register(
        "ftpct_session_fins_refused",
        "FIN set entries of followed sessions whose connection conntrack did not see close (a forged FIN, or the other side never closed within 30 s): the session goes on",
        m.fins_refused.clone(),
    );
    r.register(
        "ftpct_adoptions",
        "Control connections whose conntrack entry ftpct made anew at their first rewrite, so that the kernel keeps their fix-ups, by outcome (done; failed: ftpct keeps them)",
        m.adoptions.clone(),
    );
    r.register_collector(Box::new(Scrape {
        metrics: m,
        engine,
        queues,
    }));
    r
}

/// A kernel figure of a queue: name, help, its value given the queue's
/// line and what ftpct received from it, and whether it is a counter.
type QueueFigure = (
    &'static str,
    &'static str,
    fn(&queue_stats::QueueStats, u64) -> u64,
    bool,
);

/// The figures read at each scrape.
struct Scrape {
    metrics: Metrics,
    engine: ReadEngine,
    queues: Vec<u16>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("queues", &self.queues)
            .finish()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.engine(&mut enc)?;
        self.kernel_queues(&mut enc)?;
        netlink_failures(&mut enc, &self.metrics.netlink.errors)?;
        netlink_requests(&mut enc, &self.metrics.netlink.requests)?;
        process::encode(&mut enc, &process::read(), self.metrics.started)
    }
}

impl Scrape {
    fn engine(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(EngineFigures {
            stats,
            flows,
            pending,
            dsts,
        }) = (self.engine)()
        else {
            return Ok(());
        };
        let counters = [
            (
                "ftpct_packets",
                "Packets the engine looked at",
                stats.packets,
            ),
            ("ftpct_rewrites", "Announcements rewritten", stats.rewrites),
            (
                "ftpct_segments_fixed_up",
                "Segments whose sequence numbers, acknowledgements or payload were changed",
                stats.fixed_up,
            ),
            (
                "ftpct_expectations_created",
                "Data connections expected",
                stats.expectations,
            ),
            (
                "ftpct_expectations_matched",
                "Expected data connections that came (made RELATED)",
                stats.data_matched,
            ),
            (
                "ftpct_expectations_expired",
                "Expected data connections that never came",
                stats.expectations_expired,
            ),
            (
                "ftpct_control_connections",
                "Control connections followed",
                stats.flows,
            ),
            (
                "ftpct_control_connections_untracked",
                "Control connections not followed (table full)",
                stats.flows_untracked,
            ),
            (
                "ftpct_control_connections_evicted",
                "Control connections not yet established, dropped from the table to make room",
                stats.flows_evicted,
            ),
            (
                "ftpct_control_connections_stale",
                "Control connections followed until NAT gave their reply tuple to a new connection",
                stats.flows_stale,
            ),
            (
                "ftpct_tls_sessions",
                "Control connections that turned to TLS (AUTH TLS): sequence fix-ups only from then on",
                stats.tls_sessions,
            ),
            (
                "ftpct_overlong_lines",
                "Control lines longer than max_line, passed unchanged and not parsed",
                stats.overlong_lines,
            ),
            (
                "ftpct_held_lines_given_up",
                "Line heads held for their rest and passed unchanged after too many retransmissions",
                stats.held_given_up,
            ),
            (
                "ftpct_mss_clamped",
                "SYNs and SYN-ACKs of control connections whose MSS ftpct lowered to leave room for rewrites",
                stats.mss_clamped,
            ),
            (
                "ftpct_malformed_lines",
                "Malformed announcements passed unchanged",
                stats.malformed,
            ),
            (
                "ftpct_segments_dropped",
                "Segments ftpct dropped (a line head held for its rest, or out of order)",
                stats.dropped,
            ),
            (
                "ftpct_resyncs",
                "Directions followed again after unseen bytes",
                stats.resyncs,
            ),
            (
                "ftpct_segments_implausible",
                "Segments of a followed connection whose numbers were far from its stream (spoofed?), passed without a look",
                stats.implausible,
            ),
            (
                "ftpct_passive_notes",
                "PASV/EPSV requests the kernel's rule let pass unqueued and noted, taken for the announcement answering them",
                stats.passive_notes,
            ),
        ];
        for (name, help, v) in counters {
            counter(enc, name, help, v)?;
        }
        gauge(
            enc,
            "ftpct_flows",
            "Control connections followed now",
            flows,
        )?;
        gauge(
            enc,
            "ftpct_expectations_pending",
            "Data connections expected now",
            pending,
        )?;
        gauge(
            enc,
            "ftpct_ipset_entries",
            "Destinations the ipsets must hold now",
            dsts,
        )
    }

    /// The kernel's figures per queue. Packets the kernel handed out but
    /// ftpct never received, beyond those dropped at the socket, passed
    /// uninspected (fail-open); those that pass because the queue itself
    /// is full are not counted by the kernel.
    fn kernel_queues(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(all) = queue_stats::read() else {
            return Ok(());
        };
        let ours: Vec<_> = all
            .into_iter()
            .filter(|q| self.queues.contains(&q.queue))
            .collect();
        let m = &self.metrics;
        let per_queue: [QueueFigure; 4] = [
            (
                "ftpct_queue_waiting",
                "Packets waiting in the kernel queue for a verdict",
                |q, _| q.waiting,
                false,
            ),
            (
                "ftpct_queue_dropped",
                "Packets dropped by the kernel: queue full",
                |q, _| q.dropped,
                true,
            ),
            (
                "ftpct_queue_user_dropped",
                "Packets dropped by the kernel: ftpct's socket full",
                |q, _| q.user_dropped,
                true,
            ),
            (
                "ftpct_queue_fail_open_passes",
                "Packets passed uninspected: ftpct's socket full, fail-open",
                |q, got| q.sent.saturating_sub(got + q.waiting + q.user_dropped),
                true,
            ),
        ];
        for (name, help, value, is_counter) in per_queue {
            let kind = if is_counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0i64).metric_type()
            };
            let mut desc = enc.encode_descriptor(name, help, None, kind)?;
            for q in &ours {
                let v = value(q, m.received_by(q.queue));
                let labels: Labels = [("queue", q.queue.to_string())];
                let fam = desc.encode_family(&labels)?;
                if is_counter {
                    ConstCounter::new(v).encode(fam)?;
                } else {
                    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(fam)?;
                }
            }
        }
        Ok(())
    }
}

fn netlink_failures(enc: &mut DescriptorEncoder, errors: &OpErrors) -> Result<(), std::fmt::Error> {
    let series = errors.snapshot().into_iter().map(|(op, cause, n)| {
        let labels = [("operation", format!("{op:?}")), ("cause", cause.label())];
        (labels, n)
    });
    labelled_counter(
        enc,
        "ftpct_netlink_errors",
        "Failed netlink requests (ctnetlink, ipset), by operation and cause (errno, timeout, socket)",
        series,
    )
}

fn netlink_requests(
    enc: &mut DescriptorEncoder,
    requests: &OpRequests,
) -> Result<(), std::fmt::Error> {
    let series = requests
        .snapshot()
        .into_iter()
        .flat_map(|(op, unwaited, waited)| {
            [(unwaited, "no"), (waited, "yes")].map(|(n, w)| {
                let labels = [("operation", format!("{op:?}")), ("waited", w.to_string())];
                (labels, n)
            })
        });
    labelled_counter(
        enc,
        "ftpct_netlink_requests",
        "Netlink requests sent (ctnetlink, ipset), by operation and whether the sender waited for the answer",
        series,
    )
}

/// A counter with one series per label pair.
fn labelled_counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = ([(&'static str, String); 2], u64)>,
) -> Result<(), std::fmt::Error> {
    let mut desc =
        enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, n) in series {
        ConstCounter::new(n).encode(desc.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: usize,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// The registry as Prometheus text (version 0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_engine::Config;

    /// The figures of an engine that saw nothing.
    fn idle_engine() -> ReadEngine {
        let figures = EngineFigures::of(&Engine::new(Config::default()));
        Box::new(move || Some(figures.clone()))
    }

    #[test]
    fn a_scrape_shows_what_was_counted() {
        let m = Metrics::default();
        let mut q = m.for_queue(0);
        q.packet(VerdictKind::Accept, Duration::from_micros(12));
        q.packet(VerdictKind::Adjusted, Duration::from_micros(30));
        q.lookups(LookupStats {
            hits: 1,
            queries: 3,
            errors: 0,
        });
        q.lookups(LookupStats {
            hits: 2,
            queries: 3,
            errors: 0,
        });
        let text = render(&registry(m, idle_engine(), vec![0]));
        for line in [
            "ftpct_verdicts_total{kind=\"accept\"} 1",
            "ftpct_verdicts_total{kind=\"adjusted\"} 1",
            "ftpct_verdicts_total{kind=\"rewritten\"} 0",
            "ftpct_queue_received_total{queue=\"0\"} 2",
            "ftpct_packet_handling_seconds_count 2",
            "ftpct_conntrack_lookups_total 3",
            "ftpct_conntrack_lookup_cache_hits_total 2",
            "ftpct_flows 0",
            "ftpct_packets_total 0",
            "# TYPE ftpct_netlink_errors_total counter",
        ] {
            assert!(text.contains(line), "{line}:\n{text}");
        }
    }

    #[test]
    fn every_labelled_series_is_there_from_the_start() {
        let text = render(&registry(Metrics::default(), idle_engine(), vec![0]));
        for rule in REFUSAL_RULES {
            let line = format!("ftpct_refusals_total{{rule=\"{rule}\"}} 0");
            assert!(text.contains(&line), "{line}:\n{text}");
        }
        for line in [
            "ftpct_adoptions_total{outcome=\"done\"} 0",
            "ftpct_adoptions_total{outcome=\"failed\"} 0",
            "ftpct_config_reloads_total{outcome=\"failed\"} 0",
            "ftpct_verdicts_total{kind=\"drop\"} 0",
            "ftpct_config_last_reload_successful 1",
            "ftpct_rules_readable 0",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE ftpct_build_info gauge",
        ] {
            assert!(text.contains(line), "{line}:\n{text}");
        }
        let version = format!(
            "ftpct_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&version), "{text}");
        assert!(!text.contains(" -1\n"), "no sentinel: {text}");
    }

    #[test]
    fn the_sockets_failures_are_shown() {
        use crate::netfilter::error::{Error, Op, Target};
        let m = Metrics::default();
        let refused = Error::Kernel {
            op: Op::CtCreate,
            target: Target::None,
            errno: libc::ENOMEM,
        };
        m.netlink_errors().count(Op::CtCreate, &refused);
        let text = render(&registry(m, idle_engine(), vec![0]));
        let line = "ftpct_netlink_errors_total{operation=\"CtCreate\",cause=\"12\"} 1";
        assert!(text.contains(line), "{line}:\n{text}");
    }

    #[test]
    fn the_sockets_requests_are_shown_by_waiting() {
        use crate::netfilter::error::Op;
        let m = Metrics::default();
        m.netlink_counters().requests.sent(Op::IpsetDel, false);
        let text = render(&registry(m, idle_engine(), vec![0]));
        for line in [
            "ftpct_netlink_requests_total{operation=\"IpsetDel\",waited=\"no\"} 1",
            "ftpct_netlink_requests_total{operation=\"CtGet\",waited=\"yes\"} 0",
        ] {
            assert!(text.contains(line), "{line}:\n{text}");
        }
    }

    #[test]
    fn a_reload_is_counted_and_timed() {
        let m = Metrics::default();
        m.reloaded(false);
        assert_eq!(m.reload_ok.get(), 0);
        m.reloaded(true);
        assert_eq!(m.reload_ok.get(), 1);
        assert!(m.reload_time.get() >= m.started);
    }
}
