//! What the kernel side reads of a control segment to decide whether it
//! must cross to ftpct: the words and reply codes that can matter, and the
//! header shapes the rules and programs read. The rules (`rules.rs`) and
//! the BPF programs (`bpf.rs`) are built from these.

use crate::netfilter::family::Family;

/// What a client line that matters starts with (any case: FTP commands
/// are case-insensitive).
pub const CLIENT_WORDS: [&str; 5] = ["PORT", "EPRT", "PASV", "EPSV", "AUTH"];
/// What a server line that matters holds: the announcements, AUTH's
/// answer, and the hyphen of a multi-line reply's first line (its end and
/// every line it quotes must be seen).
pub const SERVER_WORDS: [&str; 4] = ["227", "229", "234", "-"];

/// The TCP header with the timestamps option, as Linux and most stacks
/// send every segment of a connection: 32 bytes.
pub const TCP_HEADER_WITH_TIMESTAMPS: usize = 32;

/// Where xt_string starts looking in a packet of `family` whose TCP header
/// is `timestamps`-long (32 bytes, as [`tcp_header_is_32`] reads it) or
/// not: where the payload starts (IPv4 without options, IPv6 without
/// extension headers) or before it (IPv4 options), else after the
/// smallest headers (a match in TCP options only queues a segment more;
/// the timestamps change with every segment and would hit now and then).
/// Never after the payload's start: no keyword is missed.
pub fn string_from(family: Family, timestamps: bool) -> usize {
    let ip = match family {
        Family::V4 => 20,
        Family::V6 => 40,
    };
    ip + if timestamps {
        TCP_HEADER_WITH_TIMESTAMPS
    } else {
        20
    }
}
