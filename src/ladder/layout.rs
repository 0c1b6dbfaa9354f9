//! Where things are on the page: the three columns of the ladder (the
//! inside host, the gateway, the outside host), in CSS pixels. The page
//! has a fixed width so that text fits its arrows at a known size.

/// The page's margin around the ladder.
pub const PAGE_MARGIN: u32 = 16;
/// Width of the ladder, time column included.
pub const WIDTH: u32 = 1200;
/// The lifelines.
pub const X_INSIDE: u32 = 170;
pub const X_GATEWAY: u32 = 645;
pub const X_OUTSIDE: u32 = 1120;
/// Width of a host's box at the top of its lifeline.
pub const HOST_BOX: u32 = 160;
/// Right edge of the time column.
pub const TIME_RIGHT: u32 = 150;
/// Height of a row of arrows.
pub const ARROW_ROW: u32 = 44;
/// Monospace font size of arrow labels, and the width of a character in
/// it (DejaVu Sans Mono and its kin: 0.6 em).
pub const FONT_PX: f64 = 11.0;
pub const CHAR_PX: f64 = FONT_PX * 0.61;

// The halves alike; the host boxes and the time column on the page.
const _: () = assert!(X_GATEWAY - X_INSIDE == X_OUTSIDE - X_GATEWAY);
const _: () = assert!(X_OUTSIDE + HOST_BOX / 2 <= WIDTH && TIME_RIGHT < X_INSIDE);

/// Characters that fit along one half of the ladder, with a margin.
pub fn half_chars() -> usize {
    let half = f64::from(X_GATEWAY - X_INSIDE) - 48.0;
    (half / CHAR_PX) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_227_line_fits_a_half() {
        // The longest FTP line of the lab captures, escaped.
        let line = r"227 Entering Passive Mode (198,51,100,20,159,194).\r\n";
        assert!(half_chars() >= line.len(), "{}", half_chars());
    }
}
