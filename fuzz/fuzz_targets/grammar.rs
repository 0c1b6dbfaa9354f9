//! Fuzz target: the FTP grammar must classify any bytes without panicking,
//! and whatever it reads as an announcement must survive a rewrite.
//! `tests/fuzz_corpus_grammar.rs` includes this file to run the corpus
//! through [`check`] in a plain `cargo test`.
#![cfg_attr(not(test), no_main)]

use ftpct_engine::grammar::{
    client_prefix_may_announce, parse_client_line, parse_server_line, rewrite_line,
    server_prefix_may_announce, Announce, ClientLine, ServerLine,
};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|line: &[u8]| check(line));

/// Every check the target makes on one input.
pub fn check(line: &[u8]) {
    let _ = client_prefix_may_announce(line);
    let _ = server_prefix_may_announce(line);
    if let Ok(ClientLine::Announce(announce)) = parse_client_line(line) {
        check_rewrite(line, &announce);
    }
    if let Ok(ServerLine::Announce(announce)) = parse_server_line(line) {
        check_rewrite(line, &announce);
    }
}

/// Writing the announced values back must give a line that reads the same.
fn check_rewrite(line: &[u8], announce: &Announce) {
    assert!(announce.span.start <= announce.span.end && announce.span.end <= line.len());
    let rewritten = rewrite_line(line, announce, announce.addr, announce.port);
    let again = match (parse_client_line(&rewritten), parse_server_line(&rewritten)) {
        (Ok(ClientLine::Announce(a)), _) | (_, Ok(ServerLine::Announce(a))) => a,
        other => panic!("rewrite of {line:?} no longer parses: {other:?}"),
    };
    assert_eq!(
        (again.kind, again.addr, again.port),
        (announce.kind, announce.addr, announce.port)
    );
}
