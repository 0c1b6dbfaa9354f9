//! The man pages and completions in packaging/ are what `ftpct generate`
//! writes from the command line's definition, so that `cargo deb -p
//! ftpct` packages current ones without a generation step of its own.
//! After a change to the command line, a help text or scripts/ftpct.toml:
//! `FTPCT_BLESS=1 cargo test --test packaging` rewrites them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging")
}

fn bless() -> bool {
    std::env::var_os("FTPCT_BLESS").is_some()
}

/// Compares (or, blessing, writes) one generated file.
fn check(committed: &Path, generated: &[u8], stale: &mut Vec<String>) {
    if bless() {
        fs::write(committed, generated).expect("write the packaged file");
    } else if fs::read(committed).ok().as_deref() != Some(generated) {
        stale.push(committed.display().to_string());
    }
}

fn report(stale: &[String]) {
    assert!(
        stale.is_empty(),
        "out of date (FTPCT_BLESS=1 cargo test --test packaging): {stale:?}"
    );
}

#[test]
fn packaged_man_pages_are_current() {
    let dir = std::env::temp_dir().join(format!("ftpct-packaging-{}", std::process::id()));
    let out = Command::new(FTPCT)
        .args(["generate", "man"])
        .arg(&dir)
        .output()
        .expect("ftpct generate man");
    assert!(out.status.success(), "{out:?}");
    let committed = packaging().join("man");
    let mut stale = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(&dir).expect("generated pages") {
        let path = entry.expect("entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.expect("a file name");
        check(
            &committed.join(&name),
            &fs::read(&path).expect("read"),
            &mut stale,
        );
        names.push(name);
    }
    let _ = fs::remove_dir_all(&dir);
    for entry in fs::read_dir(&committed).expect("packaging/man") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !names.contains(&name) {
            stale.push(format!("{name} (no such page any more)"));
        }
    }
    for page in [
        "ftpct.8",
        "ftpct-run.8",
        "ftpct-config-check.8",
        "ftpct.toml.5",
    ] {
        assert!(names.iter().any(|n| n == page), "{page} in {names:?}");
    }
    report(&stale);
}

#[test]
fn packaged_completions_are_current() {
    let mut stale = Vec::new();
    for (shell, file) in [
        ("bash", "ftpct.bash"),
        ("zsh", "_ftpct"),
        ("fish", "ftpct.fish"),
    ] {
        let out = Command::new(FTPCT)
            .args(["generate", "completions", shell])
            .output()
            .expect("ftpct generate completions");
        assert!(out.status.success(), "{out:?}");
        check(
            &packaging().join("completions").join(file),
            &out.stdout,
            &mut stale,
        );
    }
    report(&stale);
}
