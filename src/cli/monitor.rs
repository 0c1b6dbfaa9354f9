//! The flags of `ftpct monitor` and what it prints at the end.

use std::path::PathBuf;

use ftpct_engine::engine::Config;
use ftpct_engine::nat::{DnatRule, SnatRule};
use ftpct_engine::policy::Policy;
use tracing::info;

use crate::cli::config::Settings;
use crate::cli::logging::{self, LogFormat};
use crate::monitor::{self, MonitorError};

#[derive(clap::Args, Clone, Debug)]
pub struct MonitorArgs {
    /// Interface to watch (a gateway's inside interface, or a mirror port)
    #[arg(long, short = 'i', value_name = "IF")]
    pub interface: String,
    /// Source NAT the gateway does: hosts in CIDR leave as ADDR; repeatable
    #[arg(long, value_name = "CIDR=ADDR")]
    pub snat: Vec<SnatRule>,
    /// Destination NAT the gateway does: PUBLIC[:PORT] leads to PRIVATE[:PORT]; repeatable
    #[arg(long, value_name = "PUBLIC[:PORT]=PRIVATE[:PORT]")]
    pub dnat: Vec<DnatRule>,
    /// One JSON object per event instead of a table
    #[arg(long)]
    pub json: bool,
    /// Also write the frames seen to this pcap file
    #[arg(long, value_name = "FILE.pcap")]
    pub write: Option<PathBuf>,
    /// When stopped, draw every FTP session seen as a ladder diagram in
    /// this HTML file (as `ftpct replay --html`: inside host, gateway,
    /// outside host, each segment on both sides, rewrites, expectations,
    /// matches, refusals). Self-contained, readable offline; at most
    /// 50000 segments and events are drawn
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// Only frames to and from this host (no promiscuous mode)
    #[arg(long)]
    pub no_promiscuous: bool,
    /// Control-channel ports, comma-separated: 1 to 64 ports, each 1 to
    /// 65535, none twice
    #[arg(long, value_delimiter = ',', default_value = "21")]
    pub control_ports: Vec<u16>,
    /// Announcements of third-party addresses in CIDR are not alerts (FXP); repeatable
    #[arg(long = "allow-fxp", value_name = "CIDR")]
    pub allow_fxp: Vec<ipnet::IpNet>,
    /// Data ports below this are refused (bounce attacks on 25 and
    /// friends), 1024 to 65535
    #[arg(long, default_value_t = 1024)]
    pub min_data_port: u16,
    /// Log format of the alerts (standard error)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl MonitorArgs {
    /// What these flags set, over the defaults: what `config::validate`
    /// checks before the monitor starts.
    pub fn settings(&self) -> Settings {
        let mut s = Settings {
            control_ports: self.control_ports.clone(),
            ..Settings::default()
        };
        s.policy.min_data_port = self.min_data_port;
        s.policy.allow_fxp = self.allow_fxp.clone();
        s
    }

    fn options(self) -> monitor::Options {
        monitor::Options {
            interface: self.interface,
            snat: self.snat,
            dnat: self.dnat,
            config: Config {
                control_ports: self.control_ports,
                policy: Policy {
                    min_data_port: self.min_data_port,
                    allow_fxp: self.allow_fxp,
                },
                ..Config::default()
            },
            json: self.json,
            write: self.write,
            html: self.html,
            promiscuous: !self.no_promiscuous,
        }
    }
}

/// `ftpct monitor`: watches until SIGINT/SIGTERM, then says what it saw.
pub fn run(args: MonitorArgs) -> Result<(), MonitorError> {
    logging::init(args.log_format, 0);
    let seen = monitor::run(args.options())?;
    info!(
        "stopped: {} frames ({} without IP), {} verdicts of the gateway unlike ftpct's; {}",
        seen.frames, seen.not_ip, seen.mismatches, seen.stats
    );
    Ok(())
}
