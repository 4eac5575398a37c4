//! Flags every binary shares: certificates and logging. Their environment
//! variables are shared too (`TIERKV_CA`, …), since the nodes of one cluster
//! use the same CA.

use std::path::PathBuf;

use crate::telemetry::LogFormat;
use crate::tls::TlsConfig;

/// Certificate and logging flags, flattened into each binary's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// CA certificate (PEM) that peers' certificates must chain to.
    #[arg(long, env = "TIERKV_CA")]
    pub ca: Option<PathBuf>,
    /// This node's certificate chain (PEM).
    #[arg(long, env = "TIERKV_CERT")]
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "TIERKV_KEY")]
    pub key: Option<PathBuf>,
    /// Generate (or reuse) development certificates in DIR instead of --ca/--cert/--key
    /// [default when none is given: ./.tierkv/certs].
    #[arg(long, env = "TIERKV_DEV_CERTS", value_name = "DIR")]
    pub dev_certs: Option<PathBuf>,
    /// Log format: text or json. The filter comes from RUST_LOG [default: text].
    #[arg(long, env = "TIERKV_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Export spans to this OpenTelemetry collector over OTLP/HTTP, e.g.
    /// http://collector:4318 (builds with the `otlp` feature) [default: none].
    #[arg(long, env = "TIERKV_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

impl CommonArgs {
    /// Applies the flags over a config's TLS section, log format and OTLP
    /// endpoint. Giving any PEM path turns the development certificates off.
    pub fn apply(
        self,
        tls: &mut TlsConfig,
        log_format: &mut LogFormat,
        otlp_endpoint: &mut Option<String>,
    ) {
        use crate::config::{set, set_some};
        if self.ca.is_some() || self.cert.is_some() || self.key.is_some() {
            tls.dev_certs = None;
        }
        set_some(&mut tls.ca, self.ca);
        set_some(&mut tls.cert, self.cert);
        set_some(&mut tls.key, self.key);
        set_some(&mut tls.dev_certs, self.dev_certs);
        set(log_format, self.log_format);
        set_some(otlp_endpoint, self.otlp_endpoint);
    }
}
