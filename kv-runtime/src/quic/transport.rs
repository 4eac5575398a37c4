//! QUIC transport settings shared by servers and clients.

use std::sync::Arc;
use std::time::Duration;

/// Liveness settings of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportOptions {
    /// How often an idle link sends a keep-alive.
    pub keep_alive: Duration,
    /// How long a link may hear nothing before it is declared dead.
    pub idle_timeout: Duration,
    /// Most request streams a peer may have open on one connection.
    pub max_concurrent_streams: u32,
}

impl Default for TransportOptions {
    fn default() -> Self {
        // A peer that stops answering is declared dead after 4 s: four
        // missed keep-alives, short enough that failover is quick, long
        // enough that a loaded peer is not dropped.
        Self {
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(4),
            max_concurrent_streams: 1024,
        }
    }
}

impl TransportOptions {
    /// The quinn transport config these options describe.
    pub fn to_quinn(&self) -> Arc<quinn::TransportConfig> {
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(self.keep_alive));
        transport.max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_timeout).ok());
        transport.max_concurrent_bidi_streams(self.max_concurrent_streams.into());
        // Every exchange, the change feed included, is on a bidirectional stream.
        transport.max_concurrent_uni_streams(0u32.into());
        // Values reach 25 MiB: let a stream have a few MiB in flight, so a
        // large value is not throttled to a trickle by flow control.
        transport.stream_receive_window((8u32 * 1024 * 1024).into());
        transport.receive_window((32u32 * 1024 * 1024).into());
        transport.send_window(32 * 1024 * 1024);
        Arc::new(transport)
    }
}
