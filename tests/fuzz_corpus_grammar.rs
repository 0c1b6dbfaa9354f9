//! Runs every input of the `grammar` fuzz corpus through the same checks as
//! the fuzz target, so the corpus guards against regressions in a plain
//! `cargo test` (no fuzzer needed).

use std::fs;
use std::path::Path;

use ftpct::grammar::{
    client_prefix_may_announce, parse_client_line, parse_server_line, rewrite_line,
    server_prefix_may_announce, Announce, ClientLine, ServerLine,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/grammar");

/// Same as `fuzz/fuzz_targets/grammar.rs`.
fn check(line: &[u8]) {
    let _ = client_prefix_may_announce(line);
    let _ = server_prefix_may_announce(line);
    if let Ok(ClientLine::Announce(announce)) = parse_client_line(line) {
        check_rewrite(line, &announce);
    }
    if let Ok(ServerLine::Announce(announce)) = parse_server_line(line) {
        check_rewrite(line, &announce);
    }
}

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

#[test]
fn every_corpus_input_passes_the_fuzz_checks() {
    let entries = fs::read_dir(Path::new(CORPUS)).expect("fuzz corpus directory");
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let line = fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| check(&line));
        assert!(outcome.is_ok(), "corpus input {} failed", path.display());
        count += 1;
    }
    assert!(count >= 20, "corpus unexpectedly small: {count} inputs");
}

#[test]
fn corpus_announcements_are_recognised() {
    // A few seeds whose meaning must not drift.
    let read = |name: &str| fs::read(Path::new(CORPUS).join(name)).expect("seed file");
    for name in ["port", "port-lower-lf", "eprt-v4", "eprt-v6", "eprt-bang"] {
        assert!(
            matches!(parse_client_line(&read(name)), Ok(ClientLine::Announce(_))),
            "{name}"
        );
    }
    for name in ["227", "227-equals", "227-no-parens", "229", "229-hash"] {
        assert!(
            matches!(parse_server_line(&read(name)), Ok(ServerLine::Announce(_))),
            "{name}"
        );
    }
    for name in ["port-octet-256", "eprt-octal", "227-seven", "229-no-close"] {
        let line = read(name);
        assert!(
            parse_client_line(&line).is_err() || parse_server_line(&line).is_err(),
            "{name}"
        );
    }
}
