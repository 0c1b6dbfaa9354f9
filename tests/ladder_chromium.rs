//! The ladder page of the active SNAT capture rendered by headless
//! Chromium (Debian's `chromium`, from scripts/install-deps.sh) into a
//! PNG, checked for content: the size asked for, not blank, the three
//! lifelines drawn down the page, arrows and labels on both sides of the
//! gateway, the rewrite's colours. Without Chromium the test is skipped,
//! except under CI=true, where it fails.

mod common;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ftpct::ladder::layout::{PAGE_MARGIN, X_GATEWAY, X_INSIDE, X_OUTSIDE};

const CAPTURE: &str = "lab/snat-v4-port-curl-vsftpd-download.inside.pcap";
const WIDTH: u32 = 1240;
const HEIGHT: u32 = 1800;
/// Chromium's first start in a fresh profile takes seconds; a hang is
/// ended well before the test harness would notice.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn chromium_draws_the_active_snat_ladder() {
    let Some(chromium) = find_chromium() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "chromium is not installed (scripts/install-deps.sh installs it): CI=true does not skip this test"
        );
        eprintln!("skipped: no chromium in PATH (scripts/install-deps.sh installs it)");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ladder-chromium");
    std::fs::create_dir_all(&dir).expect("temporary folder");
    let html = dir.join("snat-port.html");
    let args = ["--snat", "192.0.2.0/24=198.51.100.1"].map(String::from);
    let (_, page) = common::ladder_page(CAPTURE, &args);
    std::fs::write(&html, page).expect("page written");
    let png = dir.join("snat-port.png");
    screenshot(&chromium, &html, &png, &dir);
    let picture = Picture::read(&png);
    eprintln!("picture: {}", png.display());
    picture.check();
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|name| d.join(name)))
        .find(|p| p.is_file())
}

/// Chromium as root, offline, in a fresh profile: the page at the window
/// size into `png`.
fn screenshot(chromium: &Path, html: &Path, png: &Path, dir: &Path) {
    let _ = std::fs::remove_file(png);
    let profile = dir.join("profile");
    let _ = std::fs::remove_dir_all(&profile);
    let log_path = dir.join("chromium.log");
    let log = File::create(&log_path).expect("log file");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium took over {CHROMIUM_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success() && png.exists(),
        "chromium: {status}\n{tail}"
    );
}

/// A decoded screenshot, RGB.
struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Picture {
    fn read(path: &Path) -> Picture {
        let file = BufReader::new(File::open(path).expect("png opens"));
        let mut reader = png::Decoder::new(file).read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
        let info = reader.next_frame(&mut buf).expect("png decodes");
        assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit samples");
        let samples = info.color_type.samples();
        assert!(samples >= 3, "colour picture: {:?}", info.color_type);
        let rgb = buf[..info.buffer_size()]
            .chunks_exact(samples)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Picture {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        self.rgb[(y * self.width + x) as usize]
    }

    /// Rows, of all, where column `x` is ink.
    fn inked_rows(&self, x: u32) -> f64 {
        let n = (0..self.height).filter(|&y| is_ink(self.at(x, y))).count();
        n as f64 / f64::from(self.height)
    }

    /// Ink pixels between columns `from` and `to`, lifelines left out.
    fn ink_between(&self, from: u32, to: u32) -> usize {
        (0..self.height)
            .flat_map(|y| (from + 4..to - 4).map(move |x| (x, y)))
            .filter(|&(x, y)| is_ink(self.at(x, y)))
            .count()
    }

    fn count(&self, near: [u8; 3]) -> usize {
        self.rgb.iter().filter(|p| close(**p, near, 24)).count()
    }

    fn check(&self) {
        assert_eq!((self.width, self.height), (WIDTH, HEIGHT), "window size");
        let ink = self.rgb.iter().filter(|p| is_ink(**p)).count();
        let share = ink as f64 / self.rgb.len() as f64;
        assert!(
            share > 0.02,
            "almost blank: {:.4} of the pixels are ink",
            share
        );
        // The lifelines run down the page (the page's margin before them).
        let (inside, gateway, outside) = (
            PAGE_MARGIN + X_INSIDE,
            PAGE_MARGIN + X_GATEWAY,
            PAGE_MARGIN + X_OUTSIDE,
        );
        for (name, x, least) in [
            ("inside", inside, 0.5),
            ("gateway", gateway, 0.3),
            ("outside", outside, 0.5),
        ] {
            let rows = self.inked_rows(x);
            assert!(
                rows > least,
                "{name} lifeline at x={x}: ink in {rows:.2} of the rows"
            );
        }
        // Arrows and their labels on both sides of the gateway.
        for (name, from, to) in [
            ("inside half", inside, gateway),
            ("outside half", gateway, outside),
        ] {
            let n = self.ink_between(from, to);
            assert!(n > 20_000, "{name}: {n} ink pixels");
        }
        // The rewritten PORT's arrows (orange), its before and after marks.
        for (name, colour, least) in [
            ("rewrite arrow", [0xc7, 0x6a, 0x00], 300),
            ("removed bytes", [0xf7, 0xc6, 0xc0], 200),
            ("inserted bytes", [0xc4, 0xe8, 0xc5], 200),
            ("data arrow", [0x1f, 0x6f, 0xb2], 100),
        ] {
            let n = self.count(colour);
            assert!(n >= least, "{name}: {n} pixels of {colour:02x?}");
        }
    }
}

/// Anything clearly darker than the white page.
fn is_ink(p: [u8; 3]) -> bool {
    p.iter().map(|&c| u32::from(c)).sum::<u32>() < 3 * 200
}

fn close(p: [u8; 3], q: [u8; 3], tolerance: u8) -> bool {
    p.iter().zip(q).all(|(a, b)| a.abs_diff(b) <= tolerance)
}
