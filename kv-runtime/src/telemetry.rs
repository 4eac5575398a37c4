//! `tracing` set-up shared by the binaries: log lines on stderr (text or
//! JSON) and, with the `otlp` feature, spans exported to an OpenTelemetry
//! collector over OTLP/HTTP.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An OTLP endpoint was given to a build without the `otlp` feature.
    #[error(
        "this build cannot export traces: rebuild with `--features otlp` or drop --otlp-endpoint"
    )]
    NoOtlp,
    /// The OTLP exporter could not be built.
    #[error("cannot set up OTLP export to {endpoint}: {message}")]
    Otlp {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        message: String,
    },
}

/// Flushes exported spans when dropped; keep it alive until the process ends.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber: the filter comes from `RUST_LOG`
/// (default `info`), lines go to stderr. With `otlp_endpoint` (the `otlp`
/// feature), spans also go to that OTLP/HTTP endpoint, as `service`.
/// Calling it twice is harmless: the second call changes nothing.
pub fn init(
    format: LogFormat,
    service: &'static str,
    otlp_endpoint: Option<&str>,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal; files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(lines);
    match otlp_endpoint {
        None => {
            let _ = registry.try_init();
            Ok(TelemetryGuard::default())
        }
        #[cfg(not(feature = "otlp"))]
        Some(_) => {
            let _ = (registry, service);
            Err(TelemetryError::NoOtlp)
        }
        #[cfg(feature = "otlp")]
        Some(endpoint) => {
            let provider = otlp::provider(service, endpoint)?;
            let _ = registry.with(otlp::layer(&provider)).try_init();
            Ok(TelemetryGuard {
                provider: Some(provider),
            })
        }
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::TelemetryError;

    /// Spans are batched and sent from the SDK's own thread, so a slow
    /// collector never holds up a request.
    pub(super) fn provider(
        service: &'static str,
        endpoint: &str,
    ) -> Result<SdkTracerProvider, TelemetryError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint))
            .build()
            .map_err(|e| TelemetryError::Otlp {
                endpoint: endpoint.to_string(),
                message: e.to_string(),
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service)
            .build();
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build())
    }

    pub(super) fn layer<S>(
        provider: &SdkTracerProvider,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("tierkv"))
    }

    /// `http://collector:4318` gets the standard traces path appended; a
    /// URL that already names a path is used as it is.
    pub(super) fn traces_url(endpoint: &str) -> String {
        let trimmed = endpoint.trim_end_matches('/');
        let has_path = trimmed
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        if has_path {
            trimmed.to_string()
        } else {
            format!("{trimmed}/v1/traces")
        }
    }
}

#[cfg(all(test, not(feature = "otlp")))]
mod without_otlp {
    #[test]
    fn an_endpoint_is_refused_by_a_build_that_cannot_export() {
        let result = super::init(super::LogFormat::Text, "x", Some("http://127.0.0.1:4318"));
        assert!(matches!(result, Err(super::TelemetryError::NoOtlp)));
    }
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    #[test]
    fn the_traces_path_is_added_only_when_missing() {
        assert_eq!(
            super::otlp::traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            super::otlp::traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            super::otlp::traces_url("https://otel.example/custom/traces"),
            "https://otel.example/custom/traces"
        );
    }
}

/// A stable 64-bit hash of a key, for logs and spans: keys may be personal
/// data, so they are never logged themselves. FNV-1a, rendered as hex.
pub fn key_hash(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
