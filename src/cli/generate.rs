//! `ftpct generate`: man pages and shell completions, from the clap
//! definition of the command line (for packages; hidden from --help).

use std::io;
use std::path::Path;

use clap_complete::Shell;

/// Writes `ftpct.8`, one `ftpct-SUB.8` per subcommand (and
/// `ftpct-SUB-SUBSUB.8` below it) and `ftpct.toml.5` into `dir`; returns
/// the files written.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut cmd = cmd;
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    write_tree(&cmd, dir, "ftpct", &mut written)?;
    let path = dir.join("ftpct.toml.5");
    std::fs::write(&path, super::config_page::page(&version))?;
    written.push(path.display().to_string());
    Ok(written)
}

/// The page of `cmd`, named `name`, then those of its subcommands.
fn write_tree(
    cmd: &clap::Command,
    dir: &Path,
    name: &str,
    out: &mut Vec<String>,
) -> io::Result<()> {
    write_page(cmd, dir, name, out)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let sub_name = format!("{name}-{}", sub.get_name());
        let page = sub.clone().name(sub_name.clone());
        write_tree(&page, dir, &sub_name, out)?;
    }
    Ok(())
}

/// A section 8 page (system administration), with the sections clap
/// cannot write after clap's own.
fn write_page(
    cmd: &clap::Command,
    dir: &Path,
    name: &str,
    out: &mut Vec<String>,
) -> io::Result<()> {
    let path = dir.join(format!("{name}.8"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .render(&mut buf)?;
    buf.extend_from_slice(super::man_sections::extra_sections(name).as_bytes());
    std::fs::write(&path, buf)?;
    out.push(path.display().to_string());
    Ok(())
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: Shell) {
    clap_complete::generate(shell, &mut cmd, "ftpct", &mut io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_are_written() {
        let cmd = clap::Command::new("ftpct")
            .version("1")
            .subcommand(clap::Command::new("run").about("Run"))
            .subcommand(clap::Command::new("config").subcommand(clap::Command::new("check")))
            .subcommand(clap::Command::new("hidden").hide(true));
        let dir = std::env::temp_dir().join(format!("ftpct-man-{}", std::process::id()));
        let files = man_pages(cmd, &dir).expect("written");
        assert_eq!(files.len(), 5, "{files:?}");
        let page = std::fs::read_to_string(dir.join("ftpct-run.8")).expect("page");
        assert!(page.contains(".TH ftpct-run 8"), "{page}");
        assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
        assert!(dir.join("ftpct-config-check.8").exists());
        assert!(dir.join("ftpct.toml.5").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
