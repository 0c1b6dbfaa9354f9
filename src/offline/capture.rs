//! Capture files: reading pcap and pcapng, writing pcap, with the link
//! layers tcpdump and Wireshark produce (Ethernet with up to two VLAN tags,
//! 802.1Q and 802.1ad QinQ; raw IP; Linux cooked SLL and SLL2).

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The first four bytes of a pcapng file (its section header block type).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// One frame: its time, the link-layer header and the IP packet.
#[derive(Debug, Clone)]
pub struct Frame {
    pub time: Duration,
    pub link_header: Vec<u8>,
    pub ip: Vec<u8>,
}

/// A capture read into memory.
#[derive(Debug)]
pub struct Capture {
    pub datalink: DataLink,
    pub frames: Vec<Frame>,
    /// Frames that carry no IP packet (ARP, ...), skipped.
    pub skipped: usize,
}

#[derive(Debug)]
pub struct CaptureError(pub String);

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaptureError {}

/// Reads a pcap or pcapng file. Unsupported link types are an error
/// naming them; a pcapng file's interfaces must share one link type.
pub fn read(path: &Path) -> Result<Capture, CaptureError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| CaptureError(format!("cannot open {}: {e}", path.display())))?;
    let shown = path.display();
    let corrupt = |e: &dyn std::fmt::Display| {
        CaptureError(format!("{shown}: truncated or corrupt packet: {e}"))
    };
    let mut capture = Capture {
        datalink: DataLink::ETHERNET,
        frames: Vec::new(),
        skipped: 0,
    };
    if bytes.starts_with(&PCAPNG_MAGIC) {
        let mut reader = PcapNgReader::new(&bytes[..])
            .map_err(|e| CaptureError(format!("{shown} is not a pcapng file: {e}")))?;
        let mut datalink = None;
        while let Some(block) = reader.next_block() {
            let (interface, time, data) = match block.map_err(|e| corrupt(&e))? {
                Block::EnhancedPacket(p) => (p.interface_id, p.timestamp, p.data.into_owned()),
                Block::SimplePacket(p) => (0, Duration::ZERO, p.data.into_owned()),
                _ => continue,
            };
            let link = reader
                .interfaces()
                .get(interface as usize)
                .map(|i| i.linktype)
                .ok_or_else(|| corrupt(&format!("packet of undescribed interface {interface}")))?;
            if *datalink.get_or_insert(link) != link {
                return Err(CaptureError(format!(
                    "{shown}: interfaces of different link types ({:?} and {link:?}): split it first (editcap, tshark)",
                    datalink.unwrap_or(link)
                )));
            }
            capture.datalink = supported(link, path)?;
            capture.push(time, &data);
        }
        return Ok(capture);
    }
    let mut reader = PcapReader::new(&bytes[..])
        .map_err(|e| CaptureError(format!("{shown} is neither a pcap nor a pcapng file ({e})")))?;
    capture.datalink = supported(reader.header().datalink, path)?;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|e| corrupt(&e))?;
        capture.push(packet.timestamp, &packet.data);
    }
    Ok(capture)
}

impl Capture {
    /// Adds a frame of the capture's link type, or counts it as skipped
    /// when it carries no IP packet.
    fn push(&mut self, time: Duration, frame: &[u8]) {
        match split_frame(self.datalink, frame) {
            Some((link, ip)) => self.frames.push(Frame {
                time,
                link_header: link.to_vec(),
                ip: ip.to_vec(),
            }),
            None => self.skipped += 1,
        }
    }
}

fn supported(datalink: DataLink, path: &Path) -> Result<DataLink, CaptureError> {
    match link_header_len(datalink, &[]) {
        Some(_) => Ok(datalink),
        None => Err(CaptureError(format!(
            "{}: link type {datalink:?} is not supported (Ethernet, raw IP, Linux SLL/SLL2 are)",
            path.display()
        ))),
    }
}

/// Length of the link header before the IP packet, if it carries IP.
/// With an empty frame, tells whether the link type is supported at all.
fn link_header_len(datalink: DataLink, frame: &[u8]) -> Option<usize> {
    let probe = frame.is_empty();
    let ethertype_at = |at: usize| -> Option<u16> {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let is_ip = |t: Option<u16>| probe || matches!(t, Some(ETHERTYPE_IPV4 | ETHERTYPE_IPV6));
    match datalink {
        DataLink::ETHERNET => {
            // Up to two VLAN tags (802.1Q, or 802.1ad outer + 802.1Q inner).
            let mut at = 12;
            while at < 20 && matches!(ethertype_at(at), Some(ETHERTYPE_VLAN | ETHERTYPE_QINQ)) {
                at += 4;
            }
            is_ip(ethertype_at(at)).then_some(at + 2)
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(0),
        DataLink::LINUX_SLL => is_ip(ethertype_at(14)).then_some(16),
        DataLink::LINUX_SLL2 => is_ip(ethertype_at(0)).then_some(20),
        _ => None,
    }
}

/// A frame's link header and its IP packet; None when it carries no IP.
pub fn split_frame(datalink: DataLink, frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = link_header_len(datalink, frame)?;
    (frame.len() > len).then(|| frame.split_at(len))
}

/// Writes frames with the given link type (each frame keeps its own link header).
pub fn write(path: &Path, datalink: DataLink, frames: &[Frame]) -> Result<(), CaptureError> {
    let mut writer = Writer::create(path, datalink)?;
    frames.iter().try_for_each(|f| writer.write(f))?;
    writer.finish()
}

/// A pcap file written frame by frame (a live capture never holds its
/// frames in memory).
pub struct Writer {
    path: std::path::PathBuf,
    pcap: PcapWriter<BufWriter<File>>,
}

impl Writer {
    pub fn create(path: &Path, datalink: DataLink) -> Result<Self, CaptureError> {
        let file = File::create(path).map_err(|e| write_error(path, &e))?;
        let header = PcapHeader {
            datalink,
            ..PcapHeader::default()
        };
        let pcap = PcapWriter::with_header(BufWriter::new(file), header)
            .map_err(|e| write_error(path, &e))?;
        Ok(Writer {
            path: path.to_path_buf(),
            pcap,
        })
    }

    /// Appends a frame, its link header then its IP packet.
    pub fn write(&mut self, f: &Frame) -> Result<(), CaptureError> {
        let mut data = f.link_header.clone();
        data.extend_from_slice(&f.ip);
        let packet = PcapPacket::new(f.time, data.len() as u32, &data);
        self.pcap
            .write_packet(&packet)
            .map(|_| ())
            .map_err(|e| write_error(&self.path, &e))
    }

    /// Flushes what is buffered to the file.
    pub fn finish(self) -> Result<(), CaptureError> {
        use std::io::Write as _;
        let path = self.path;
        self.pcap
            .into_writer()
            .flush()
            .map_err(|e| write_error(&path, &e))
    }
}

fn write_error(path: &Path, e: &dyn std::fmt::Display) -> CaptureError {
    CaptureError(format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_packet() -> Vec<u8> {
        let mut v = vec![0x45, 0, 0, 20];
        v.resize(20, 0);
        v
    }

    #[test]
    fn link_layers() {
        let ip = ip_packet();
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        eth.extend_from_slice(&ip);
        assert_eq!(
            split_frame(DataLink::ETHERNET, &eth).map(|(_, p)| p),
            Some(&ip[..])
        );

        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        assert_eq!(
            split_frame(DataLink::LINUX_SLL, &sll).map(|(_, p)| p),
            Some(&ip[..])
        );

        let mut sll2 = ETHERTYPE_IPV6.to_be_bytes().to_vec();
        sll2.resize(20, 0);
        sll2.extend_from_slice(&ip);
        assert_eq!(
            split_frame(DataLink::LINUX_SLL2, &sll2).map(|(_, p)| p),
            Some(&ip[..])
        );

        assert_eq!(
            split_frame(DataLink::RAW, &ip).map(|(_, p)| p),
            Some(&ip[..])
        );

        let mut qinq = vec![0u8; 12];
        qinq.extend_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        qinq.extend_from_slice(&[0, 10]);
        qinq.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        qinq.extend_from_slice(&[0, 20]);
        qinq.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        qinq.extend_from_slice(&ip);
        assert_eq!(
            split_frame(DataLink::ETHERNET, &qinq).map(|(l, p)| (l.len(), p)),
            Some((22, &ip[..]))
        );

        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&0x0806u16.to_be_bytes());
        arp.extend_from_slice(&[0; 28]);
        assert!(split_frame(DataLink::ETHERNET, &arp).is_none());
        assert!(link_header_len(DataLink::USB_LINUX, &[]).is_none());
    }

    #[test]
    fn write_then_read() {
        let dir = std::env::temp_dir().join(format!("ftpct-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("rt.pcap");
        let frames = vec![Frame {
            time: Duration::from_millis(1500),
            link_header: vec![],
            ip: ip_packet(),
        }];
        write(&path, DataLink::RAW, &frames).expect("write");
        let back = read(&path).expect("read");
        assert_eq!(back.frames.len(), 1);
        assert_eq!(back.frames[0].ip, ip_packet());
        assert_eq!(back.frames[0].time, Duration::from_millis(1500));
        std::fs::remove_dir_all(&dir).ok();
    }
}
