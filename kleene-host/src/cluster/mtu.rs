//! The MTU of a cluster network's links. A tunnel wraps every frame in headers of its own
//! and sends the result from this host's underlay address; a frame that fills the
//! underlay's MTU before wrapping does not fit after it (the outer packet would be
//! fragmented, or dropped when it must not be), so large transfers across hosts stall. The
//! network's links (its bridge, its tunnel device, both ends of every container's pair) get
//! the underlay's MTU less the wrapping: what the network type declares its encapsulation
//! takes, plus the outer IP header. Each host computes it from its own underlay interface,
//! unless the network's definition names one MTU for every host (`--mtu`).

use anyhow::{bail, Result};
use std::net::IpAddr;

/// The smallest MTU IPv6 allows on a link (RFC 8200).
const MIN_MTU_V6: u32 = 1280;
/// The smallest datagram every IPv4 host must accept (RFC 791).
const MIN_MTU_V4: u32 = 576;
/// What an underlay whose MTU cannot be read is taken to carry: Ethernet's.
pub const ASSUMED_UNDERLAY_MTU: u32 = 1500;

/// Bytes a tunnel from `underlay` takes from each frame: the type's encapsulation and the
/// outer IP header.
pub fn overhead(encapsulation: u16, underlay: IpAddr) -> u32 {
    let ip_header = if underlay.is_ipv4() { 20 } else { 40 };
    u32::from(encapsulation) + ip_header
}

/// The links' MTU on this host: `explicit` if the definition names one, else the underlay's
/// less the overhead; none for a type that declares no encapsulation (nothing to make room
/// for).
pub fn link_mtu(explicit: Option<u32>, encapsulation: u16, underlay: IpAddr, underlay_mtu: u32) -> Option<u32> {
    if explicit.is_some() {
        return explicit;
    }
    (encapsulation > 0).then(|| underlay_mtu.saturating_sub(overhead(encapsulation, underlay)))
}

/// Check an operator's `--mtu` against what the network carries (IPv6 needs 1280) and what
/// this host's tunnel can carry (`largest`).
pub fn validate(mtu: u32, ipv6: bool, largest: u32) -> Result<()> {
    let least = if ipv6 { MIN_MTU_V6 } else { MIN_MTU_V4 };
    if !(least..=largest).contains(&mtu) {
        let why = if ipv6 { " (a network with an IPv6 subnet needs at least 1280)" } else { "" };
        bail!(
            "invalid --mtu {mtu}: use {least} to {largest}{why}; {largest} is what this host's underlay carries once the tunnel's headers are taken off"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_takes_50_bytes_over_ipv4_and_70_over_ipv6() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(link_mtu(None, 30, v4, 1500), Some(1450));
        assert_eq!(link_mtu(None, 30, v6, 1500), Some(1430));
        assert_eq!(link_mtu(None, 30, v4, 9000), Some(8950));
        assert_eq!(link_mtu(Some(1400), 30, v4, 1500), Some(1400), "the definition's wins");
        assert_eq!(link_mtu(None, 0, v4, 1500), None, "no tunnel, no MTU of its own");
    }

    #[test]
    fn an_operators_mtu_must_fit_the_tunnel_and_the_families() {
        assert!(validate(1450, false, 1450).is_ok());
        assert!(validate(576, false, 1450).is_ok());
        assert!(validate(1280, true, 1450).is_ok());
        let too_big = validate(1451, false, 1450).unwrap_err().to_string();
        assert!(too_big.contains("--mtu 1451") && too_big.contains("576 to 1450"), "{too_big}");
        assert!(validate(575, false, 1450).is_err());
        let v6 = validate(1279, true, 1450).unwrap_err().to_string();
        assert!(v6.contains("1280 to 1450") && v6.contains("IPv6"), "{v6}");
    }
}
