//! `ftpct generate`: man pages and shell completions, from the clap
//! definition of the command line (for packages; hidden from --help).

use std::io;
use std::path::Path;

use clap_complete::Shell;

/// Writes `ftpct.1` and one `ftpct-SUB.1` per subcommand into `dir`;
/// returns the files written.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut cmd = cmd;
    cmd.build();
    write_page(&cmd, dir, "ftpct", &mut written)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("ftpct-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        write_page(&page, dir, &name, &mut written)?;
    }
    Ok(written)
}

fn write_page(
    cmd: &clap::Command,
    dir: &Path,
    name: &str,
    out: &mut Vec<String>,
) -> io::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
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
            .subcommand(clap::Command::new("hidden").hide(true));
        let dir = std::env::temp_dir().join(format!("ftpct-man-{}", std::process::id()));
        let files = man_pages(cmd, &dir).expect("written");
        assert_eq!(files.len(), 2, "{files:?}");
        let page = std::fs::read_to_string(dir.join("ftpct-run.1")).expect("page");
        assert!(page.contains(".TH ftpct-run"), "{page}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
