//! The state objects a plugin sees: networks, endpoints, containers.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with a prefix length, e.g. `10.0.0.0/24` or `fd00::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        from_bits(self.addr, to_bits(self.addr) & self.mask())
    }

    /// Whether `ip` lies inside this block (same family, same network bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && (to_bits(ip) & self.mask()) == (to_bits(self.addr) & self.mask())
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && (self.contains(other.network()) || other.contains(self.network()))
    }

    fn mask(&self) -> u128 {
        let width = Self::max_prefix(self.addr) as u32;
        let all = if width == 32 { u32::MAX as u128 } else { u128::MAX };
        if self.prefix == 0 {
            0
        } else {
            all & !((1u128 << (width - self.prefix as u32)) - 1)
        }
    }
}

/// An address as an integer (IPv4 in the low 32 bits), for range arithmetic.
pub fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_bits`] for the family of `like`.
pub fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((bits as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(bits.into()),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("could not parse cidr block: {s:?}"))?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("could not parse cidr block: {s:?}"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("could not parse cidr block: {s:?}"))?;
        if prefix > Self::max_prefix(addr) {
            return Err(format!("could not parse cidr block: {s:?}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A network as stored by the host. `kind` is the network-type plugin's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub interface: String,
    pub subnet: Option<Cidr>,
    pub subnet6: Option<Cidr>,
    /// The IPv4 default gateway of vnet containers, if any.
    pub gateway: Option<IpAddr>,
    /// The gateway was `auto`: the host side of the network holds it.
    #[serde(default)]
    pub gateway_auto: bool,
    pub gateway6: Option<IpAddr>,
    #[serde(default)]
    pub gateway6_auto: bool,
    /// Interface outbound traffic is NATed to; empty = no NAT.
    pub nat: String,
    pub icc: bool,
    pub internal: bool,
    /// Set for a network of a cluster-scoped type (API 1.2): what every host shares and
    /// what this host's side of it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterScope>,
}

/// A cluster-scoped network as one host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterScope {
    /// The network's number in the cluster, the same on every host (a VXLAN VNI).
    pub vni: u32,
    /// This host's underlay address, which the other hosts send the network's traffic to.
    pub local: IpAddr,
    /// The UDP port tunnels use (4789 unless configured).
    pub port: u16,
    /// The MTU of the network's links on this host (API 1.2): its own interfaces and both
    /// ends of every container's pair, so that no frame is larger than the tunnel carries.
    /// The host sets it: the network's explicit `--mtu`, else this host's underlay interface
    /// MTU less the type's [`crate::NetworkTraits::encapsulation`] and the outer IP header.
    /// Absent (no encapsulation declared, or a network built before 1.2 had it): the
    /// kernel's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// A container of a cluster-scoped network on another host (API 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub address: IpAddr,
    pub mac: [u8; 6],
    /// The underlay address of the host it runs on.
    pub host: IpAddr,
}

impl Network {
    /// The MTU the network's links must have, if it prescribes one (see [`ClusterScope::mtu`]).
    pub fn link_mtu(&self) -> Option<u32> {
        self.cluster.and_then(|c| c.mtu)
    }

    /// A network with no subnets, gateways or NAT, icc on, not internal: the base that tests
    /// (the host's and plugin authors') adjust field by field.
    pub fn new(id: &str, name: &str, kind: &str, interface: &str) -> Network {
        Network {
            id: id.into(),
            name: name.into(),
            kind: kind.into(),
            interface: interface.into(),
            subnet: None,
            subnet6: None,
            gateway: None,
            gateway_auto: false,
            gateway6: None,
            gateway6_auto: false,
            nat: String::new(),
            icc: true,
            internal: false,
            cluster: None,
        }
    }
}

/// A container's membership in a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub network_id: String,
    pub container_id: String,
    /// Host-side interface of a vnet container's pair, while running.
    pub epair: Option<String>,
    /// The container-side interface name of a vnet pair (e.g. `eth0`), while running. Set in
    /// a `ContainerStart` call, it is the name the container's runtime asked for (a CNI
    /// runtime's `CNI_IFNAME`): a driver that names pairs uses it.
    #[serde(default)]
    pub interface: Option<String>,
    pub ip_address: Option<IpAddr>,
    pub ip_address6: Option<IpAddr>,
    /// The hardware address the container's interface must have (API 1.2): set on
    /// cluster-scoped networks, whose other hosts forward to it by address. Drivers that
    /// give containers a stack of their own set it; absent, the kernel picks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
}

impl Endpoint {
    /// An endpoint with no interfaces, addresses or MAC yet: the base that tests (the
    /// host's and plugin authors') adjust field by field, so that a field added in a minor
    /// version does not break them.
    pub fn new(id: &str, network_id: &str, container_id: &str) -> Endpoint {
        Endpoint {
            id: id.into(),
            network_id: network_id.into(),
            container_id: container_id.into(),
            epair: None,
            interface: None,
            ip_address: None,
            ip_address6: None,
            mac: None,
        }
    }

    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ip_address.iter().chain(self.ip_address6.iter()).copied()
    }
}

/// A container's network sandbox. `driver` is the driver plugin's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub running: bool,
}

/// A locally administered unicast MAC address derived from `id`: the first 12 hex
/// digits of a kleene id as six bytes (so the address shows which network it belongs to),
/// any other text hashed; the locally-administered bit set, the multicast bit clear.
/// The same id always gives the same address, so re-creating a link keeps it.
pub fn local_mac(id: &str) -> [u8; 6] {
    let hex = id.get(..12).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut mac = [0u8; 6];
    match hex {
        Some(hex) => {
            for (i, byte) in mac.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex digits");
            }
        }
        None => {
            // FNV-1a: stable across builds and platforms (std's hasher promises neither).
            let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
            mac.copy_from_slice(&hash.to_be_bytes()[..6]);
        }
    }
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

/// `aa:bb:cc:dd:ee:ff`, as `ip` and `ifconfig` print and take it.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.1.0.0");
        assert!(c.contains("10.1.255.255".parse().unwrap()));
        assert!(!c.contains("10.2.0.0".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let v6: Cidr = "fd00:1::/64".parse().unwrap();
        assert!(v6.contains("fd00:1::ffff".parse().unwrap()));
        assert!(!v6.contains("fd00:2::1".parse().unwrap()));
        assert!("172.18.0.0-16".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let zero: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(zero.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn cidr_overlap() {
        let a: Cidr = "10.0.0.0/16".parse().unwrap();
        let b: Cidr = "10.0.5.0/24".parse().unwrap();
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }

    #[test]
    fn local_mac_is_stable_unicast_and_local() {
        assert_eq!(mac_string(&local_mac("9075f81edd94")), "92:75:f8:1e:dd:94");
        assert_eq!(local_mac("9075f81edd94"), local_mac("9075f81edd94"));
        for id in ["ffffffffffff", "not an id", ""] {
            let mac = local_mac(id);
            assert_eq!(mac[0] & 0x03, 0x02, "{id}: locally administered unicast");
        }
        assert_ne!(local_mac("not an id"), local_mac("not an ie"));
    }
}
