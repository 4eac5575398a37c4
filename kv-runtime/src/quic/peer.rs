//! A peer's address as an operator writes it: `host:port`, where the host is
//! an IP address or a DNS name. Names are resolved at each dial, so a peer
//! that moves (a restarted pod gets a new IP) is found again.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// `host:port`; IPv6 hosts in brackets (`[::1]:7400`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    host: String,
    port: u16,
}

/// Why a text is not a peer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not HOST:PORT: {reason}")]
pub struct PeerAddrError {
    text: String,
    reason: &'static str,
}

impl PeerAddr {
    /// The host: an IP address or a DNS name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address to dial: the host itself when it is an IP address,
    /// else the first IPv4 address the name resolves to (client endpoints
    /// bind IPv4), else the first address.
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} resolves to no address", self.host),
                )
            })
    }
}

impl FromStr for PeerAddr {
    type Err = PeerAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| PeerAddrError {
            text: text.to_string(),
            reason,
        };
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| fail("no port"))?;
        let port = port.parse::<u16>().map_err(|_| fail("bad port"))?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_name {
            return Err(fail("the host is neither an IP address nor a DNS name"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl serde::Serialize for PeerAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PeerAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Deserializes a list of peers from a TOML list of `host:port` strings, or
/// from one string of them separated by commas (so a field that used to hold
/// one peer still reads its old value).
pub fn deserialize_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PeerAddr>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<PeerAddr>),
    }
    match <OneOrMany as serde::Deserialize>::deserialize(deserializer)? {
        OneOrMany::Many(list) => Ok(list),
        OneOrMany::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips_and_names_and_refuses_the_rest() {
        let cases = [
            ("127.0.0.1:7400", "127.0.0.1:7400"),
            ("[::1]:7401", "[::1]:7401"),
            ("origin:7400", "origin:7400"),
            (
                "Regional-0.regional.tierkv.svc.cluster.local:7401",
                "regional-0.regional.tierkv.svc.cluster.local:7401",
            ),
        ];
        for (text, shown) in cases {
            let addr: PeerAddr = text.parse().expect(text);
            assert_eq!(addr.to_string(), shown);
        }
        for bad in [
            "origin",
            "origin:",
            "origin:70000",
            ":7400",
            "bad host:1",
            "a/b:1",
        ] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad} was accepted");
        }
    }

    #[tokio::test]
    async fn resolves_names_and_ips() {
        let ip: PeerAddr = "127.0.0.1:9".parse().expect("valid");
        assert_eq!(ip.resolve().await.expect("ip"), ([127, 0, 0, 1], 9).into());
        let name: PeerAddr = "localhost:9".parse().expect("valid");
        let resolved = name.resolve().await.expect("localhost resolves");
        assert!(resolved.ip().is_loopback());
        assert_eq!(resolved.port(), 9);
        let unknown: PeerAddr = "no-such-host.invalid:9".parse().expect("valid");
        assert!(unknown.resolve().await.is_err());
    }

    #[test]
    fn round_trips_through_toml() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Doc {
            peer: PeerAddr,
        }
        let doc: Doc = toml::from_str("peer = \"origin:7400\"").expect("parses");
        assert_eq!(doc.peer.host(), "origin");
        assert_eq!(doc.peer.port(), 7400);
        assert_eq!(
            toml::to_string(&doc).expect("writes").trim(),
            "peer = \"origin:7400\""
        );
        assert!(toml::from_str::<Doc>("peer = \"origin\"").is_err());
    }
}
