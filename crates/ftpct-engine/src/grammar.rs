//! The FTP control-channel grammar: what a complete command or reply line
//! says about data connections, and how to write a replacement.
//!
//! Every function here is pure and works on one complete line (its bytes,
//! terminator included). Nothing allocates while parsing; a line that is not
//! an announcement is classified from its first bytes.
//!
//! Like `nf_conntrack_ftp.c`, the commands and replies we look at live in two
//! tables (`CLIENT_COMMANDS` and `SERVER_REPLIES`); each entry names the
//! parser for its arguments.
//!
//! Decisions, where the RFCs, the kernel and the clients disagree:
//! - PORT (RFC 959): six decimal numbers, leading zeros allowed; every number
//!   must fit in a byte and the port must not be 0 (older kernels did not
//!   check). Spaces may follow the keyword and the numbers; nothing else may.
//! - 227: as lenient as the kernel (RFC 1123 says to scan for the first
//!   digit): the numbers may stand anywhere after `227 `, with or without
//!   parentheses, after `=`, or followed by a full stop. Where the kernel
//!   gives up on the first digit run, we take the first run that is followed
//!   by six comma-separated numbers, as clients do (Python's ftplib searches
//!   for `\d+,\d+,\d+,\d+,\d+,\d+`, curl for the first place that parses).
//!   A seventh number makes the reply ambiguous: malformed.
//! - Only final reply lines (`227 `, `229 `, `234 `) count. A `227-` line
//!   starts a multi-line reply whose last line is the one clients act on, so
//!   it is [`ServerLine::Other`], as in the kernel (which matches `227 `).
//! - EPRT (RFC 2428): any delimiter in 33..=126 except digits. IPv4 addresses
//!   must be strict dotted quads without leading zeros (`010.0.0.1` is 8.0.0.1
//!   to a server that uses `inet_aton`, 10.0.0.1 to us: refuse to guess).
//!   IPv6 addresses go through the standard parser (no zone, no brackets).
//!   Whether the family suits the connection is the caller's question (the
//!   kernel checks it). When writing, a delimiter that could be read as part
//!   of the address (`.`, `:`, hex digits for IPv6) is replaced by `|`.
//! - 229: `(` then three identical delimiters, the port, the delimiter and
//!   `)`. The kernel does not check the `)`; ftplib needs it. The span is
//!   the port digits only, so the original delimiters stay (the kernel
//!   rewrites them all to `|`).
//! - Families are never converted: `EPRT |2|::ffff:192.0.2.1|...|` gives an
//!   IPv6 address. When writing, PORT and 227 accept an IPv4-mapped IPv6
//!   address and write its IPv4 form; EPRT writes whatever family it is
//!   given (Rust prints IPv6 in RFC 5952 form, mapped addresses as
//!   `::ffff:192.0.2.1`).

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

/// Which of the four announcements a line carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceKind {
    /// Client `PORT h1,h2,h3,h4,p1,p2`.
    Port,
    /// Client `EPRT |1|addr|port|` or `EPRT |2|addr|port|`.
    Eprt,
    /// Server `227 ... h1,h2,h3,h4,p1,p2`.
    Pasv227,
    /// Server `229 ... (|||port|)`: a port only.
    Epsv229,
}

/// An address/port announcement found in a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub kind: AnnounceKind,
    /// `None` only for 229, which carries a port only.
    pub addr: Option<IpAddr>,
    pub port: u16,
    /// Byte range in the line that [`format_announce`]'s output replaces.
    pub span: Range<usize>,
    /// EPRT/229 delimiter (`|` usually); `b','` for PORT/227.
    pub delim: u8,
}

impl Announce {
    /// The announced endpoint, when the line names an address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.addr.map(|addr| SocketAddr::new(addr, self.port))
    }
}

/// What a client command line is, for connection tracking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientLine {
    Announce(Announce),
    Pasv,
    /// `EPSV`, `EPSV 1`, `EPSV 2`.
    Epsv,
    /// `EPSV ALL`: the client promises to use nothing but EPSV from now on.
    EpsvAll,
    Lprt,
    Lpsv,
    /// `AUTH TLS`, `AUTH SSL`, `AUTH TLS-C`, `AUTH TLS-P`.
    AuthTls,
    Other,
}

/// What a server reply line is, for connection tracking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerLine {
    Announce(Announce),
    /// `234`: the security exchange is accepted; ciphertext follows.
    AuthAccepted,
    Other,
}

/// Why an announcement line could not be read. The engine passes such lines
/// through unchanged and counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// No numbers where the announcement needs them, or too few.
    MissingNumbers,
    /// A character other than a digit inside a number.
    BadNumber,
    /// A number too large for its field (octet > 255, port > 65535).
    NumberOutOfRange,
    /// An EPRT/229 delimiter that is invalid or not repeated, or a 229
    /// without its parentheses.
    BadDelimiter,
    /// An EPRT address that is not a valid address of its protocol.
    BadAddress,
    /// An EPRT network protocol other than 1 (IPv4) or 2 (IPv6).
    BadProtocol,
    /// Port 0.
    ZeroPort,
    /// The line ends before the announcement does.
    Truncated,
    /// Text after the announcement where none may be (a seventh number,
    /// characters after the last EPRT delimiter).
    TrailingGarbage,
}

impl Malformed {
    /// A short stable name, for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::MissingNumbers => "missing_numbers",
            Malformed::BadNumber => "bad_number",
            Malformed::NumberOutOfRange => "number_out_of_range",
            Malformed::BadDelimiter => "bad_delimiter",
            Malformed::BadAddress => "bad_address",
            Malformed::BadProtocol => "bad_protocol",
            Malformed::ZeroPort => "zero_port",
            Malformed::Truncated => "truncated",
            Malformed::TrailingGarbage => "trailing_garbage",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Malformed {}

// ---------------------------------------------------------------------------
// The tables
// ---------------------------------------------------------------------------

/// Parses a command's arguments: the line without its terminator, and the
/// offset where the arguments start (spaces after the keyword skipped).
type CommandParser = fn(&[u8], usize) -> Result<ClientLine, Malformed>;

/// Parses a final reply line: the line without its terminator, and the
/// offset just after the three-digit code.
type ReplyParser = fn(&[u8], usize) -> Result<ServerLine, Malformed>;

struct Command {
    keyword: [u8; 4],
    parse: CommandParser,
}

struct Reply {
    code: [u8; 3],
    parse: ReplyParser,
}

impl Command {
    const fn new(keyword: &[u8; 4], parse: CommandParser) -> Self {
        Command {
            keyword: *keyword,
            parse,
        }
    }
}

impl Reply {
    const fn new(code: &[u8; 3], parse: ReplyParser) -> Self {
        Reply { code: *code, parse }
    }
}

/// The client commands that matter to connection tracking.
static CLIENT_COMMANDS: [Command; 7] = [
    Command::new(b"PORT", parse_port_args),
    Command::new(b"EPRT", parse_eprt_args),
    Command::new(b"PASV", |_, _| Ok(ClientLine::Pasv)),
    Command::new(b"EPSV", parse_epsv_args),
    Command::new(b"LPRT", |_, _| Ok(ClientLine::Lprt)),
    Command::new(b"LPSV", |_, _| Ok(ClientLine::Lpsv)),
    Command::new(b"AUTH", parse_auth_args),
];

/// The server replies that matter to connection tracking.
static SERVER_REPLIES: [Reply; 3] = [
    Reply::new(b"227", parse_227_text),
    Reply::new(b"229", parse_229_text),
    Reply::new(b"234", |_, _| Ok(ServerLine::AuthAccepted)),
];

/// Line starts that may turn into an announcement once the line is complete.
const CLIENT_ANNOUNCE_PREFIXES: [&[u8]; 2] = [b"PORT ", b"EPRT "];
const SERVER_ANNOUNCE_PREFIXES: [&[u8]; 2] = [b"227 ", b"229 "];

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Classifies one complete client command line.
pub fn parse_client_line(line: &[u8]) -> Result<ClientLine, Malformed> {
    let text = strip_terminator(line);
    // A keyword is exactly four bytes, followed by a space or the line end.
    let Some(keyword) = text.get(..4) else {
        return Ok(ClientLine::Other);
    };
    if !matches!(text.get(4), None | Some(b' ')) {
        return Ok(ClientLine::Other);
    }
    match CLIENT_COMMANDS
        .iter()
        .find(|command| keyword.eq_ignore_ascii_case(&command.keyword))
    {
        Some(command) => (command.parse)(text, skip_spaces(text, 4)),
        None => Ok(ClientLine::Other),
    }
}

/// Classifies one complete server reply line.
pub fn parse_server_line(line: &[u8]) -> Result<ServerLine, Malformed> {
    let text = strip_terminator(line);
    let Some(code) = text.get(..3) else {
        return Ok(ServerLine::Other);
    };
    // Only final lines (`xyz ` or a bare `xyz`) count; `xyz-` opens a
    // multi-line reply and anything else is not a reply code.
    if !matches!(text.get(3), None | Some(b' ')) {
        return Ok(ServerLine::Other);
    }
    match SERVER_REPLIES.iter().find(|reply| code == reply.code) {
        Some(reply) => (reply.parse)(text, 3),
        None => Ok(ServerLine::Other),
    }
}

/// Could this incomplete client line, once complete, be an announcement that
/// may need rewriting? True when it is too short to tell.
pub fn client_prefix_may_announce(partial: &[u8]) -> bool {
    prefix_may_match(partial, &CLIENT_ANNOUNCE_PREFIXES)
}

/// Could this incomplete server line, once complete, be an announcement that
/// may need rewriting? True when it is too short to tell.
pub fn server_prefix_may_announce(partial: &[u8]) -> bool {
    prefix_may_match(partial, &SERVER_ANNOUNCE_PREFIXES)
}

/// The text that replaces `span` for an announcement of `addr`/`port` of this
/// kind, in the style of the original (delimiter kept).
///
/// Returns an empty vector when the kind cannot carry the address (PORT/227
/// with an IPv6 address that is not IPv4-mapped, or without an address; EPRT
/// without an address): see [`try_format_announce`].
pub fn format_announce(kind: AnnounceKind, delim: u8, addr: Option<IpAddr>, port: u16) -> Vec<u8> {
    try_format_announce(kind, delim, addr, port).unwrap_or_default()
}

/// Like [`format_announce`], but `None` when the kind cannot carry `addr`.
pub fn try_format_announce(
    kind: AnnounceKind,
    delim: u8,
    addr: Option<IpAddr>,
    port: u16,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    write_announce(&mut out, kind, delim, addr, port).then_some(out)
}

/// Appends the replacement text to `out`, for callers that build a packet in
/// one buffer. Returns false, appending nothing, when the kind cannot carry
/// `addr`.
///
/// EPRT keeps `delim` unless it cannot delimit this address (a digit, a
/// character outside 33..=126, or one that occurs in the address text such as
/// `.` or `:`); then it writes the recommended `|`.
pub fn write_announce(
    out: &mut Vec<u8>,
    kind: AnnounceKind,
    delim: u8,
    addr: Option<IpAddr>,
    port: u16,
) -> bool {
    match kind {
        AnnounceKind::Port | AnnounceKind::Pasv227 => match addr.and_then(as_ipv4) {
            Some(v4) => write_host_port(out, v4, port),
            None => return false,
        },
        AnnounceKind::Eprt => match addr {
            Some(addr) => write_eprt(out, delim, addr, port),
            None => return false,
        },
        AnnounceKind::Epsv229 => write_number(out, port),
    }
    true
}

/// The whole line with the announcement replaced. Returns the line unchanged
/// when `a` does not fit it or cannot carry `addr`: see [`try_rewrite_line`].
pub fn rewrite_line(line: &[u8], a: &Announce, addr: Option<IpAddr>, port: u16) -> Vec<u8> {
    try_rewrite_line(line, a, addr, port).unwrap_or_else(|| line.to_vec())
}

/// Like [`rewrite_line`], but `None` when `a.span` lies outside the line or
/// the kind cannot carry `addr`.
pub fn try_rewrite_line(
    line: &[u8],
    a: &Announce,
    addr: Option<IpAddr>,
    port: u16,
) -> Option<Vec<u8>> {
    let before = line.get(..a.span.start)?;
    let after = line.get(a.span.end..)?;
    if a.span.start > a.span.end {
        return None;
    }
    let mut out = Vec::with_capacity(line.len() + 48);
    out.extend_from_slice(before);
    if !write_announce(&mut out, a.kind, a.delim, addr, port) {
        return None;
    }
    out.extend_from_slice(after);
    Some(out)
}

// ---------------------------------------------------------------------------
// Client command arguments
// ---------------------------------------------------------------------------

/// `PORT h1,h2,h3,h4,p1,p2`: the numbers start right at the arguments.
fn parse_port_args(text: &[u8], start: usize) -> Result<ClientLine, Malformed> {
    let numbers = read_six_numbers(text, start)?;
    let end = numbers.end;
    if skip_spaces(text, end) != text.len() {
        return Err(Malformed::TrailingGarbage);
    }
    let (addr, port) = host_port(&numbers.values)?;
    Ok(ClientLine::Announce(Announce {
        kind: AnnounceKind::Port,
        addr: Some(IpAddr::V4(addr)),
        port,
        span: start..end,
        delim: b',',
    }))
}

/// `EPRT <d>proto<d>address<d>port<d>`.
fn parse_eprt_args(text: &[u8], start: usize) -> Result<ClientLine, Malformed> {
    let delim = *text.get(start).ok_or(Malformed::MissingNumbers)?;
    if !is_valid_delimiter(delim) {
        return Err(Malformed::BadDelimiter);
    }
    let mut fields = DelimitedFields {
        text,
        delim,
        pos: start + 1,
    };
    let proto = fields.next_field()?;
    let addr_text = fields.next_field()?;
    let port_text = fields.next_field()?;
    let end = fields.pos;
    if skip_spaces(text, end) != text.len() {
        return Err(Malformed::TrailingGarbage);
    }
    let addr = parse_eprt_address(proto, addr_text)?;
    let port = parse_port_number(port_text)?;
    Ok(ClientLine::Announce(Announce {
        kind: AnnounceKind::Eprt,
        addr: Some(addr),
        port,
        span: start..end,
        delim,
    }))
}

/// `EPSV`, `EPSV 1`, `EPSV 2` or `EPSV ALL`.
fn parse_epsv_args(text: &[u8], start: usize) -> Result<ClientLine, Malformed> {
    if trim_trailing_spaces(arguments(text, start)).eq_ignore_ascii_case(b"ALL") {
        Ok(ClientLine::EpsvAll)
    } else {
        Ok(ClientLine::Epsv)
    }
}

/// `AUTH TLS` and friends switch the channel to TLS (RFC 4217); other
/// mechanisms are of no interest.
fn parse_auth_args(text: &[u8], start: usize) -> Result<ClientLine, Malformed> {
    const TLS_MECHANISMS: [&[u8]; 4] = [b"TLS", b"SSL", b"TLS-C", b"TLS-P"];
    let mechanism = trim_trailing_spaces(arguments(text, start));
    if TLS_MECHANISMS
        .iter()
        .any(|name| mechanism.eq_ignore_ascii_case(name))
    {
        Ok(ClientLine::AuthTls)
    } else {
        Ok(ClientLine::Other)
    }
}

/// The address field of EPRT, read according to its protocol field.
fn parse_eprt_address(proto: &[u8], addr_text: &[u8]) -> Result<IpAddr, Malformed> {
    // The standard parsers are strict enough: no leading zeros in IPv4
    // octets, exactly four of them, no zone or brackets in IPv6.
    let addr_text = std::str::from_utf8(addr_text).map_err(|_| Malformed::BadAddress)?;
    match proto {
        b"1" => addr_text
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| Malformed::BadAddress),
        b"2" => addr_text
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| Malformed::BadAddress),
        _ => Err(Malformed::BadProtocol),
    }
}

// ---------------------------------------------------------------------------
// Server reply text
// ---------------------------------------------------------------------------

/// `227 <any text>h1,h2,h3,h4,p1,p2<any text>`.
fn parse_227_text(text: &[u8], start: usize) -> Result<ServerLine, Malformed> {
    let numbers = find_six_numbers(text, start).ok_or(Malformed::MissingNumbers)?;
    // A seventh number: which six did the server mean?
    if text.get(numbers.end) == Some(&b',') {
        return Err(Malformed::TrailingGarbage);
    }
    let (addr, port) = host_port(&numbers.values)?;
    Ok(ServerLine::Announce(Announce {
        kind: AnnounceKind::Pasv227,
        addr: Some(IpAddr::V4(addr)),
        port,
        span: numbers.start..numbers.end,
        delim: b',',
    }))
}

/// `229 <any text>(<d><d><d>port<d>)<any text>`.
fn parse_229_text(text: &[u8], start: usize) -> Result<ServerLine, Malformed> {
    let open = find_byte(text, start, b'(').ok_or(Malformed::MissingNumbers)?;
    let after_open = open + 1;
    let delims = text
        .get(after_open..after_open + 3)
        .ok_or(Malformed::Truncated)?;
    let delim = delims[0];
    if !is_valid_delimiter(delim) || delims.iter().any(|&byte| byte != delim) {
        return Err(Malformed::BadDelimiter);
    }
    let port_start = after_open + 3;
    let mut fields = DelimitedFields {
        text,
        delim,
        pos: port_start,
    };
    let port_text = fields.next_field()?;
    match text.get(fields.pos) {
        Some(b')') => {}
        Some(_) => return Err(Malformed::BadDelimiter),
        None => return Err(Malformed::Truncated),
    }
    let port = parse_port_number(port_text)?;
    Ok(ServerLine::Announce(Announce {
        kind: AnnounceKind::Epsv229,
        addr: None,
        port,
        span: port_start..port_start + port_text.len(),
        delim,
    }))
}

// ---------------------------------------------------------------------------
// Numbers and fields
// ---------------------------------------------------------------------------

/// Six comma-separated decimal numbers and where they lie in the line.
/// Values saturate, so that an overlong number cannot wrap into range.
struct SixNumbers {
    values: [u32; 6],
    start: usize,
    end: usize,
}

/// Reads `n,n,n,n,n,n` starting exactly at `start`.
fn read_six_numbers(text: &[u8], start: usize) -> Result<SixNumbers, Malformed> {
    let mut values = [0u32; 6];
    let mut pos = start;
    for (index, value) in values.iter_mut().enumerate() {
        if index > 0 {
            match text.get(pos) {
                Some(b',') => pos += 1,
                Some(_) => return Err(Malformed::BadNumber),
                None => return Err(Malformed::MissingNumbers),
            }
        }
        let digits = digit_run(text, pos);
        if digits == 0 {
            return Err(match text.get(pos) {
                None | Some(b',') => Malformed::MissingNumbers,
                Some(_) => Malformed::BadNumber,
            });
        }
        *value = decimal_value(&text[pos..pos + digits]);
        pos += digits;
    }
    Ok(SixNumbers {
        values,
        start,
        end: pos,
    })
}

/// The first run of digits from `from` on that starts six comma-separated
/// numbers (RFC 1123: scan the reply for the first digit of the numbers).
fn find_six_numbers(text: &[u8], from: usize) -> Option<SixNumbers> {
    let mut pos = from;
    while pos < text.len() {
        if text[pos].is_ascii_digit() {
            if let Ok(numbers) = read_six_numbers(text, pos) {
                return Some(numbers);
            }
            // The rest of this digit run cannot start a better match.
            pos += digit_run(text, pos);
        } else {
            pos += 1;
        }
    }
    None
}

/// Host and port from the six numbers of PORT or 227.
fn host_port(values: &[u32; 6]) -> Result<(Ipv4Addr, u16), Malformed> {
    let mut octets = [0u8; 6];
    for (octet, &value) in octets.iter_mut().zip(values) {
        *octet = u8::try_from(value).map_err(|_| Malformed::NumberOutOfRange)?;
    }
    let port = u16::from_be_bytes([octets[4], octets[5]]);
    if port == 0 {
        return Err(Malformed::ZeroPort);
    }
    Ok((
        Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]),
        port,
    ))
}

/// A decimal TCP port of EPRT or 229: digits only, 1..=65535.
fn parse_port_number(digits: &[u8]) -> Result<u16, Malformed> {
    if digits.is_empty() {
        return Err(Malformed::MissingNumbers);
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed::BadNumber);
    }
    match u16::try_from(decimal_value(digits)) {
        Ok(0) => Err(Malformed::ZeroPort),
        Ok(port) => Ok(port),
        Err(_) => Err(Malformed::NumberOutOfRange),
    }
}

/// The value of a run of ASCII digits, saturating at `u32::MAX`.
fn decimal_value(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |value, &digit| {
        value
            .saturating_mul(10)
            .saturating_add(u32::from(digit - b'0'))
    })
}

/// Fields of EPRT and 229, each closed by the delimiter.
struct DelimitedFields<'a> {
    text: &'a [u8],
    delim: u8,
    /// Where the next field starts.
    pos: usize,
}

impl<'a> DelimitedFields<'a> {
    /// The next field, without its closing delimiter.
    fn next_field(&mut self) -> Result<&'a [u8], Malformed> {
        let close = find_byte(self.text, self.pos, self.delim).ok_or(Malformed::Truncated)?;
        let field = &self.text[self.pos..close];
        self.pos = close + 1;
        Ok(field)
    }
}

/// RFC 2428: a delimiter is printable ASCII (33..=126); digits would be
/// ambiguous next to the numbers they delimit.
fn is_valid_delimiter(byte: u8) -> bool {
    (33..=126).contains(&byte) && !byte.is_ascii_digit()
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// PORT and 227 carry IPv4 only; an IPv4-mapped IPv6 address is the same host.
fn as_ipv4(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

fn write_host_port(out: &mut Vec<u8>, addr: Ipv4Addr, port: u16) {
    let [h1, h2, h3, h4] = addr.octets();
    let [p1, p2] = port.to_be_bytes();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{h1},{h2},{h3},{h4},{p1},{p2}");
}

fn write_eprt(out: &mut Vec<u8>, delim: u8, addr: IpAddr, port: u16) {
    let delim = if can_delimit(delim, addr) {
        delim
    } else {
        b'|'
    };
    let (proto, d) = (if addr.is_ipv4() { '1' } else { '2' }, char::from(delim));
    let _ = write!(out, "{d}{proto}{d}{addr}{d}{port}{d}");
}

fn write_number(out: &mut Vec<u8>, port: u16) {
    let _ = write!(out, "{port}");
}

/// Whether `delim` can delimit the text of `addr` without being mistaken for
/// part of it.
fn can_delimit(delim: u8, addr: IpAddr) -> bool {
    let in_address_text = match addr {
        IpAddr::V4(_) => delim == b'.',
        // Hex digits, colons, and the dots of an embedded IPv4 address.
        IpAddr::V6(_) => delim.is_ascii_hexdigit() || delim == b':' || delim == b'.',
    };
    is_valid_delimiter(delim) && !in_address_text
}

// ---------------------------------------------------------------------------
// Small byte helpers
// ---------------------------------------------------------------------------

/// The line without its `\n` or `\r\n`.
fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn arguments(text: &[u8], start: usize) -> &[u8] {
    text.get(start..).unwrap_or_default()
}

fn skip_spaces(text: &[u8], from: usize) -> usize {
    let rest = text.get(from..).unwrap_or_default();
    from + rest.iter().take_while(|&&byte| byte == b' ').count()
}

fn trim_trailing_spaces(text: &[u8]) -> &[u8] {
    let kept = text.len() - text.iter().rev().take_while(|&&byte| byte == b' ').count();
    &text[..kept]
}

/// How many digits follow from `from` on.
fn digit_run(text: &[u8], from: usize) -> usize {
    let rest = text.get(from..).unwrap_or_default();
    rest.iter().take_while(|byte| byte.is_ascii_digit()).count()
}

fn find_byte(text: &[u8], from: usize, wanted: u8) -> Option<usize> {
    let rest = text.get(from..)?;
    rest.iter()
        .position(|&byte| byte == wanted)
        .map(|offset| from + offset)
}

/// Whether `partial` agrees, case-insensitively, with the start of one of
/// `prefixes`, or starts with one of them.
fn prefix_may_match(partial: &[u8], prefixes: &[&[u8]]) -> bool {
    prefixes.iter().any(|prefix| {
        let common = partial.len().min(prefix.len());
        partial[..common].eq_ignore_ascii_case(&prefix[..common])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> Option<IpAddr> {
        Some(IpAddr::V4(text.parse().expect("test address")))
    }

    fn v6(text: &str) -> Option<IpAddr> {
        Some(IpAddr::V6(text.parse().expect("test address")))
    }

    fn client_announce(line: &[u8]) -> Announce {
        match parse_client_line(line) {
            Ok(ClientLine::Announce(a)) => a,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
        }
    }

    fn server_announce(line: &[u8]) -> Announce {
        match parse_server_line(line) {
            Ok(ServerLine::Announce(a)) => a,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
        }
    }

    fn spanned<'a>(line: &'a [u8], a: &Announce) -> &'a [u8] {
        &line[a.span.clone()]
    }

    // --- PORT ---------------------------------------------------------

    #[test]
    fn port_command() {
        let line = b"PORT 192,0,2,1,4,1\r\n";
        let a = client_announce(line);
        assert_eq!(a.kind, AnnounceKind::Port);
        assert_eq!(a.addr, v4("192.0.2.1"));
        assert_eq!(a.port, 1025);
        assert_eq!(a.delim, b',');
        assert_eq!(spanned(line, &a), b"192,0,2,1,4,1");
    }

    #[test]
    fn port_is_case_insensitive_and_accepts_bare_newline() {
        for line in [&b"port 192,0,2,1,4,1\n"[..], b"Port 192,0,2,1,4,1\r\n"] {
            assert_eq!(client_announce(line).port, 1025);
        }
    }

    #[test]
    fn port_skips_spaces_around_numbers() {
        let line = b"PORT   198,51,100,7,255,255  \r\n";
        let a = client_announce(line);
        assert_eq!(a.addr, v4("198.51.100.7"));
        assert_eq!(a.port, 65535);
        assert_eq!(spanned(line, &a), b"198,51,100,7,255,255");
    }

    #[test]
    fn port_accepts_leading_zeros() {
        let a = client_announce(b"PORT 192,000,002,001,004,001\r\n");
        assert_eq!((a.addr, a.port), (v4("192.0.2.1"), 1025));
    }

    #[test]
    fn port_numbers_out_of_range() {
        for line in [
            &b"PORT 256,0,2,1,4,1\r\n"[..],
            b"PORT 192,0,2,1,256,1\r\n",
            b"PORT 192,0,2,1,4,256\r\n",
            b"PORT 192,0,2,1,4,99999999999999999999\r\n",
            b"PORT 4294967296,0,0,0,0,1\r\n",
        ] {
            assert_eq!(parse_client_line(line), Err(Malformed::NumberOutOfRange));
        }
    }

    #[test]
    fn port_zero_is_malformed() {
        assert_eq!(
            parse_client_line(b"PORT 192,0,2,1,0,0\r\n"),
            Err(Malformed::ZeroPort)
        );
    }

    #[test]
    fn port_truncated_or_broken() {
        let cases: [(&[u8], Malformed); 8] = [
            (b"PORT\r\n", Malformed::MissingNumbers),
            (b"PORT \r\n", Malformed::MissingNumbers),
            (b"PORT 192,0,2,1,4\r\n", Malformed::MissingNumbers),
            (b"PORT 192,0,2,1,4,\r\n", Malformed::MissingNumbers),
            (b"PORT 192,,2,1,4,1\r\n", Malformed::MissingNumbers),
            (b"PORT 192,0,2,1,4,1,7\r\n", Malformed::TrailingGarbage),
            (b"PORT 192,0,2,1,4,1x\r\n", Malformed::TrailingGarbage),
            (b"PORT 192.0.2.1,4,1\r\n", Malformed::BadNumber),
        ];
        for (line, error) in cases {
            assert_eq!(parse_client_line(line), Err(error), "{line:?}");
        }
        assert_eq!(
            parse_client_line(b"PORT -1,0,2,1,4,1\r\n"),
            Err(Malformed::BadNumber)
        );
    }

    #[test]
    fn words_that_only_start_like_port_are_other() {
        for line in [
            &b"PORTS 1,2,3,4,5,6\r\n"[..],
            b"PORTABLE\r\n",
            b" PORT 1,2,3,4,5,6\r\n",
        ] {
            assert_eq!(parse_client_line(line), Ok(ClientLine::Other));
        }
    }

    // --- EPRT ---------------------------------------------------------

    #[test]
    fn eprt_ipv4() {
        let line = b"EPRT |1|132.235.1.2|6275|\r\n";
        let a = client_announce(line);
        assert_eq!(a.kind, AnnounceKind::Eprt);
        assert_eq!((a.addr, a.port, a.delim), (v4("132.235.1.2"), 6275, b'|'));
        assert_eq!(spanned(line, &a), b"|1|132.235.1.2|6275|");
    }

    #[test]
    fn eprt_ipv6_forms() {
        let cases = [
            ("2001:db8::1", "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:DB8::A", "2001:db8::a"),
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
            ("64:ff9b::198.51.100.9", "64:ff9b::c633:6409"),
            ("::", "::"),
        ];
        for (written, canonical) in cases {
            let line = format!("eprt |2|{written}|5282|\r\n");
            let a = client_announce(line.as_bytes());
            assert_eq!((a.addr, a.port), (v6(canonical), 5282), "{written}");
            assert_eq!(
                spanned(line.as_bytes(), &a),
                format!("|2|{written}|5282|").as_bytes()
            );
        }
    }

    #[test]
    fn eprt_odd_delimiters() {
        for delim in ['!', '#', '~', '('] {
            let line = format!("Eprt {delim}1{delim}192.0.2.1{delim}21{delim}\r\n");
            let a = client_announce(line.as_bytes());
            assert_eq!(
                (a.addr, a.port, a.delim),
                (v4("192.0.2.1"), 21, delim as u8)
            );
        }
        let a = client_announce(b"EPRT #2#2001:db8::2#1025#\n");
        assert_eq!((a.addr, a.delim), (v6("2001:db8::2"), b'#'));
    }

    #[test]
    fn eprt_malformed() {
        let cases: [(&[u8], Malformed); 17] = [
            (b"EPRT\r\n", Malformed::MissingNumbers),
            (b"EPRT 1|192.0.2.1|21|\r\n", Malformed::BadDelimiter),
            (
                b"EPRT \x7f1\x7f192.0.2.1\x7f21\x7f\r\n",
                Malformed::BadDelimiter,
            ),
            (b"EPRT |3|192.0.2.1|21|\r\n", Malformed::BadProtocol),
            (b"EPRT ||192.0.2.1|21|\r\n", Malformed::BadProtocol),
            (b"EPRT |01|192.0.2.1|21|\r\n", Malformed::BadProtocol),
            (b"EPRT |1|2001:db8::1|21|\r\n", Malformed::BadAddress),
            (b"EPRT |2|192.0.2.1|21|\r\n", Malformed::BadAddress),
            (b"EPRT |1|192.0.2|21|\r\n", Malformed::BadAddress),
            (b"EPRT |1|192.0.2.256|21|\r\n", Malformed::BadAddress),
            (b"EPRT |1|010.0.2.1|21|\r\n", Malformed::BadAddress),
            (b"EPRT |2|fe80::1%eth0|21|\r\n", Malformed::BadAddress),
            (b"EPRT |1|192.0.2.1|0|\r\n", Malformed::ZeroPort),
            (b"EPRT |1|192.0.2.1|65536|\r\n", Malformed::NumberOutOfRange),
            (
                b"EPRT |1|192.0.2.1|99999999999999999999|\r\n",
                Malformed::NumberOutOfRange,
            ),
            (b"EPRT |1|192.0.2.1|21\r\n", Malformed::Truncated),
            (b"EPRT |1|192.0.2.1|21|x\r\n", Malformed::TrailingGarbage),
        ];
        for (line, error) in cases {
            assert_eq!(parse_client_line(line), Err(error), "{line:?}");
        }
        assert_eq!(
            parse_client_line(b"EPRT |1|192.0.2.1|+21|\r\n"),
            Err(Malformed::BadNumber)
        );
        assert_eq!(
            parse_client_line(b"EPRT |1|192.0.2.1||\r\n"),
            Err(Malformed::MissingNumbers)
        );
    }

    // --- Other client commands -----------------------------------------

    #[test]
    fn passive_and_extended_commands() {
        let cases: [(&[u8], ClientLine); 11] = [
            (b"PASV\r\n", ClientLine::Pasv),
            (b"pasv\n", ClientLine::Pasv),
            (b"EPSV\r\n", ClientLine::Epsv),
            (b"EPSV 1\r\n", ClientLine::Epsv),
            (b"epsv 2\r\n", ClientLine::Epsv),
            (b"EPSV ALL\r\n", ClientLine::EpsvAll),
            (b"epsv all \r\n", ClientLine::EpsvAll),
            (
                b"LPRT 6,16,32,1,13,184,0,0,0,0,0,0,0,0,0,1,2,4,1\r\n",
                ClientLine::Lprt,
            ),
            (b"LPSV\r\n", ClientLine::Lpsv),
            (b"RETR PORT 1,2,3,4,5,6\r\n", ClientLine::Other),
            (b"\r\n", ClientLine::Other),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_client_line(line), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn auth_tls_variants() {
        for line in [
            &b"AUTH TLS\r\n"[..],
            b"auth tls\r\n",
            b"AUTH SSL\r\n",
            b"AUTH TLS-C\r\n",
            b"AUTH tls-p\r\n",
        ] {
            assert_eq!(parse_client_line(line), Ok(ClientLine::AuthTls), "{line:?}");
        }
        for line in [&b"AUTH GSSAPI\r\n"[..], b"AUTH\r\n", b"AUTH TLSX\r\n"] {
            assert_eq!(parse_client_line(line), Ok(ClientLine::Other), "{line:?}");
        }
    }

    // --- 227 ----------------------------------------------------------

    #[test]
    fn pasv_reply_variants() {
        let cases: [&[u8]; 6] = [
            b"227 Entering Passive Mode (192,0,2,1,4,1)\r\n",
            b"227 =192,0,2,1,4,1\r\n",
            b"227 Entering Passive Mode 192,0,2,1,4,1.\r\n",
            b"227 192,0,2,1,4,1\n",
            b"227 Entering Passive Mode (192,0,2,1,4,1\r\n",
            b"227 Mode v2 (192,0,2,1,4,1)\r\n",
        ];
        for line in cases {
            let a = server_announce(line);
            assert_eq!(a.kind, AnnounceKind::Pasv227);
            assert_eq!((a.addr, a.port, a.delim), (v4("192.0.2.1"), 1025, b','));
            assert_eq!(spanned(line, &a), b"192,0,2,1,4,1", "{line:?}");
        }
    }

    #[test]
    fn pasv_reply_malformed() {
        let cases: [(&[u8], Malformed); 7] = [
            (b"227 Entering Passive Mode\r\n", Malformed::MissingNumbers),
            (b"227\r\n", Malformed::MissingNumbers),
            (b"227 (192,0,2,1,4)\r\n", Malformed::MissingNumbers),
            (b"227 (192,0,2,1,4,1,9)\r\n", Malformed::TrailingGarbage),
            (b"227 (192,0,2,300,4,1)\r\n", Malformed::NumberOutOfRange),
            (
                b"227 (99999999999999999999,0,2,1,4,1)\r\n",
                Malformed::NumberOutOfRange,
            ),
            (b"227 (192,0,2,1,0,0)\r\n", Malformed::ZeroPort),
        ];
        for (line, error) in cases {
            assert_eq!(parse_server_line(line), Err(error), "{line:?}");
        }
    }

    #[test]
    fn continuation_and_other_replies() {
        for line in [
            &b"227-Entering Passive Mode (192,0,2,1,4,1)\r\n"[..],
            b"229-Entering Extended Passive Mode (|||6446|)\r\n",
            b"2270 (192,0,2,1,4,1)\r\n",
            b"200 PORT command successful\r\n",
            b"230 (192,0,2,1,4,1)\r\n",
            b"22\r\n",
            b"\n",
        ] {
            assert_eq!(parse_server_line(line), Ok(ServerLine::Other), "{line:?}");
        }
    }

    #[test]
    fn auth_accepted() {
        for line in [&b"234 AUTH TLS successful\r\n"[..], b"234\r\n"] {
            assert_eq!(parse_server_line(line), Ok(ServerLine::AuthAccepted));
        }
        assert_eq!(parse_server_line(b"234-Proceed\r\n"), Ok(ServerLine::Other));
    }

    // --- 229 ----------------------------------------------------------

    #[test]
    fn epsv_reply() {
        let line = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
        let a = server_announce(line);
        assert_eq!(a.kind, AnnounceKind::Epsv229);
        assert_eq!((a.addr, a.port, a.delim), (None, 6446, b'|'));
        assert_eq!(spanned(line, &a), b"6446");
    }

    #[test]
    fn epsv_reply_odd_delimiters() {
        for delim in ['!', '#', ')', '('] {
            let line = format!("229 Extended ({delim}{delim}{delim}50000{delim})\n");
            let a = server_announce(line.as_bytes());
            assert_eq!((a.port, a.delim), (50000, delim as u8));
        }
    }

    #[test]
    fn epsv_reply_malformed() {
        let cases: [(&[u8], Malformed); 11] = [
            (
                b"229 Entering Extended Passive Mode\r\n",
                Malformed::MissingNumbers,
            ),
            (b"229 (||6446|)\r\n", Malformed::BadDelimiter),
            (b"229 (|!|6446|)\r\n", Malformed::BadDelimiter),
            (b"229 (1116446|)\r\n", Malformed::BadDelimiter),
            (b"229 (|||6446|\r\n", Malformed::Truncated),
            (b"229 (|||6446|]\r\n", Malformed::BadDelimiter),
            (b"229 (|||6446)\r\n", Malformed::Truncated),
            (b"229 (|\r\n", Malformed::Truncated),
            (b"229 (|||0|)\r\n", Malformed::ZeroPort),
            (b"229 (|||65536|)\r\n", Malformed::NumberOutOfRange),
            (b"229 (|2|::1|6446|)\r\n", Malformed::BadDelimiter),
        ];
        for (line, error) in cases {
            assert_eq!(parse_server_line(line), Err(error), "{line:?}");
        }
        assert_eq!(
            parse_server_line(b"229 (|||64x6|)\r\n"),
            Err(Malformed::BadNumber)
        );
        assert_eq!(
            parse_server_line(b"229 (||||)\r\n"),
            Err(Malformed::MissingNumbers)
        );
    }

    // --- Formatting and rewriting -------------------------------------

    #[test]
    fn format_each_kind() {
        let cases = [
            (
                AnnounceKind::Port,
                b',',
                v4("203.0.113.5"),
                1025,
                "203,0,113,5,4,1",
            ),
            (
                AnnounceKind::Pasv227,
                b',',
                v4("203.0.113.5"),
                65535,
                "203,0,113,5,255,255",
            ),
            (
                AnnounceKind::Eprt,
                b'|',
                v4("203.0.113.5"),
                2121,
                "|1|203.0.113.5|2121|",
            ),
            (
                AnnounceKind::Eprt,
                b'!',
                v6("2001:db8:0:0::7"),
                80,
                "!2!2001:db8::7!80!",
            ),
            (AnnounceKind::Epsv229, b'|', None, 6446, "6446"),
        ];
        for (kind, delim, addr, port, expected) in cases {
            let text = format_announce(kind, delim, addr, port);
            assert_eq!(String::from_utf8_lossy(&text), expected);
        }
    }

    #[test]
    fn format_ipv4_mapped() {
        let mapped = v6("::ffff:192.0.2.9");
        let port_text = format_announce(AnnounceKind::Port, b',', mapped, 1025);
        assert_eq!(port_text, b"192,0,2,9,4,1");
        let eprt_text = format_announce(AnnounceKind::Eprt, b'|', mapped, 1025);
        assert_eq!(eprt_text, b"|2|::ffff:192.0.2.9|1025|");
    }

    #[test]
    fn format_replaces_delimiters_that_clash_with_the_address() {
        let v4_text = format_announce(AnnounceKind::Eprt, b'.', v4("192.0.2.1"), 21);
        assert_eq!(v4_text, b"|1|192.0.2.1|21|");
        for delim in [b':', b'a', b'F', b'.', b'5', b' '] {
            let text = format_announce(AnnounceKind::Eprt, delim, v6("2001:db8::1"), 21);
            assert_eq!(text, b"|2|2001:db8::1|21|");
        }
        // `:` cannot appear in an IPv4 address: kept.
        let kept = format_announce(AnnounceKind::Eprt, b':', v4("192.0.2.1"), 21);
        assert_eq!(kept, b":1:192.0.2.1:21:");
    }

    #[test]
    fn format_refuses_what_the_kind_cannot_carry() {
        let ipv6 = v6("2001:db8::1");
        assert_eq!(
            try_format_announce(AnnounceKind::Port, b',', ipv6, 21),
            None
        );
        assert_eq!(
            try_format_announce(AnnounceKind::Pasv227, b',', None, 21),
            None
        );
        assert_eq!(
            try_format_announce(AnnounceKind::Eprt, b'|', None, 21),
            None
        );
        assert!(format_announce(AnnounceKind::Port, b',', ipv6, 21).is_empty());
    }

    #[test]
    fn rewrite_keeps_the_rest_of_the_line() {
        let line = b"227 Entering Passive Mode (10,0,0,5,195,80). Thanks\r\n";
        let a = server_announce(line);
        let rewritten = rewrite_line(line, &a, v4("203.0.113.200"), 40000);
        assert_eq!(
            rewritten,
            b"227 Entering Passive Mode (203,0,113,200,156,64). Thanks\r\n"
        );

        let line = b"eprt !2!2001:db8::10!40001!\r\n";
        let a = client_announce(line);
        let rewritten = rewrite_line(line, &a, v6("2001:db8:ffff::1"), 50000);
        assert_eq!(rewritten, b"eprt !2!2001:db8:ffff::1!50000!\r\n");

        let line = b"229 Entering Extended Passive Mode (###6446#)\r\n";
        let a = server_announce(line);
        let rewritten = rewrite_line(line, &a, None, 1);
        assert_eq!(rewritten, b"229 Entering Extended Passive Mode (###1#)\r\n");

        let line = b"PORT 10,0,0,5,4,1\r\n";
        let a = client_announce(line);
        assert_eq!(
            rewrite_line(line, &a, v4("198.51.100.1"), 1025),
            b"PORT 198,51,100,1,4,1\r\n"
        );
    }

    #[test]
    fn rewrite_with_a_span_that_does_not_fit_leaves_the_line() {
        let line = b"PORT 10,0,0,5,4,1\r\n";
        let mut a = client_announce(line);
        a.span = 10..400;
        assert_eq!(try_rewrite_line(line, &a, v4("192.0.2.1"), 21), None);
        assert_eq!(rewrite_line(line, &a, v4("192.0.2.1"), 21), line);
        a.span = Range { start: 8, end: 3 };
        assert_eq!(try_rewrite_line(line, &a, v4("192.0.2.1"), 21), None);
    }

    // --- Prefix checks ------------------------------------------------

    #[test]
    fn client_prefixes() {
        for partial in [
            &b""[..],
            b"P",
            b"po",
            b"EPR",
            b"PORT",
            b"port ",
            b"PORT 192,0,2",
            b"EPRT |2|",
        ] {
            assert!(client_prefix_may_announce(partial), "{partial:?}");
        }
        for partial in [&b"PASV"[..], b"RETR x", b"PORTS", b"E ", b"EPSV", b"\r"] {
            assert!(!client_prefix_may_announce(partial), "{partial:?}");
        }
    }

    #[test]
    fn server_prefixes() {
        for partial in [
            &b""[..],
            b"2",
            b"22",
            b"227",
            b"229 ",
            b"227 Entering Passive",
        ] {
            assert!(server_prefix_may_announce(partial), "{partial:?}");
        }
        for partial in [&b"227-"[..], b"230 ", b"1", b"150 Opening", b"2290"] {
            assert!(!server_prefix_may_announce(partial), "{partial:?}");
        }
    }

    // --- Robustness ---------------------------------------------------

    #[test]
    fn lines_without_terminator_or_with_odd_bytes_do_not_panic() {
        let cases: [&[u8]; 10] = [
            b"",
            b"\r",
            b"PORT",
            b"EPRT |",
            b"EPRT |2|\xff\xfe|21|\r\n",
            b"227 ,,,,,,,,,,,,,,\r\n",
            b"229 (",
            b"229 ((((((\r\n",
            b"\xff\xff\xff\xff\xff\r\n",
            b"227 9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9\r\n",
        ];
        for line in cases {
            let _ = parse_client_line(line);
            let _ = parse_server_line(line);
        }
    }

    #[test]
    fn malformed_names_are_distinct() {
        let all = [
            Malformed::MissingNumbers,
            Malformed::BadNumber,
            Malformed::NumberOutOfRange,
            Malformed::BadDelimiter,
            Malformed::BadAddress,
            Malformed::BadProtocol,
            Malformed::ZeroPort,
            Malformed::Truncated,
            Malformed::TrailingGarbage,
        ];
        let mut names: Vec<_> = all.iter().map(|m| m.to_string()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn socket_addr_of_an_announcement() {
        let a = client_announce(b"PORT 192,0,2,1,4,1\r\n");
        assert_eq!(
            a.socket_addr(),
            Some("192.0.2.1:1025".parse().expect("addr"))
        );
        let a = server_announce(b"229 (|||6446|)\r\n");
        assert_eq!(a.socket_addr(), None);
    }
}
