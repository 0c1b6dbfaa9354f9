//! A pending expectation as a session's kept state holds it (see `kept`),
//! and the expectation rebuilt from it and the entry's NAT mapping.

use std::net::SocketAddr;
use std::time::Duration;

use crate::expect::{Expectation, NatBindings};
use crate::grammar::AnnounceKind;
use crate::kept::PendingKept;
use crate::nat::CtMapping;
use crate::tuple::Dir;

/// Which direction announces `kind`.
pub fn announcer(kind: AnnounceKind) -> Dir {
    match kind {
        AnnounceKind::Port | AnnounceKind::Eprt => Dir::Orig,
        AnnounceKind::Pasv227 | AnnounceKind::Epsv229 => Dir::Reply,
    }
}

/// What is kept of `exp`; None for what cannot be (a third-party
/// address: FXP).
pub fn keep(m: &CtMapping, exp: &Expectation) -> Option<PendingKept> {
    let dir = announcer(exp.kind);
    let own_public = match dir {
        Dir::Orig => m.reply.dst.ip(),
        Dir::Reply => m.orig.dst.ip(),
    };
    if exp.dst.ip() != own_public {
        return None;
    }
    Some(PendingKept {
        kind: exp.kind,
        announced_port: exp.nat.dst.map_or(exp.dst.port(), |d| d.port()),
        public_port: exp.dst.port(),
    })
}

/// The expectation `p` stands for on the control connection `m`, as the
/// announcement made it (the same peer, destination and follow-master NAT),
/// expiring at `expires`.
pub fn restore(m: &CtMapping, p: &PendingKept, expires: Duration) -> Expectation {
    let dir = announcer(p.kind);
    let (own, own_public, peer) = match dir {
        Dir::Orig => (m.orig.src.ip(), m.reply.dst.ip(), m.reply.src.ip()),
        Dir::Reply => (m.reply.src.ip(), m.orig.dst.ip(), m.orig.src.ip()),
    };
    let nat = if m.is_natted() {
        let src = match dir {
            Dir::Orig => m.orig.dst.ip(),
            Dir::Reply => m.reply.dst.ip(),
        };
        NatBindings {
            src: Some(src),
            dst: Some(SocketAddr::new(own, p.announced_port)),
        }
    } else {
        NatBindings::NONE
    };
    Expectation {
        peer,
        dst: SocketAddr::new(own_public, p.public_port),
        nat,
        master: m.orig,
        kind: p.kind,
        expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::Tuple;

    fn t(s: &str, d: &str) -> Tuple {
        Tuple::new(s.parse().expect("addr"), d.parse().expect("addr"))
    }

    #[test]
    fn a_kept_expectation_is_restored_as_it_was() {
        // SNAT: the client's PORT 40000, told as 198.51.100.1:40001.
        let m = CtMapping {
            orig: t("192.0.2.10:40000", "198.51.100.20:21"),
            reply: t("198.51.100.20:21", "198.51.100.1:40000"),
        };
        let exp = Expectation {
            peer: "198.51.100.20".parse().expect("ip"),
            dst: "198.51.100.1:40001".parse().expect("addr"),
            nat: NatBindings {
                src: Some("198.51.100.20".parse().expect("ip")),
                dst: Some("192.0.2.10:40000".parse().expect("addr")),
            },
            master: m.orig,
            kind: AnnounceKind::Port,
            expires: Duration::from_secs(9),
        };
        let kept = keep(&m, &exp).expect("kept");
        assert_eq!((kept.announced_port, kept.public_port), (40000, 40001));
        assert_eq!(restore(&m, &kept, Duration::from_secs(9)), exp);
        let fxp = Expectation {
            dst: "203.0.113.5:40001".parse().expect("addr"),
            ..exp
        };
        assert_eq!(keep(&m, &fxp), None, "a third party cannot be kept");
    }
}
