//! What every dualwrite process sets up the same way: logs, metrics, shutdown.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

/// Structured logs to stderr; `RUST_LOG` filters, `DUALWRITE_LOG_FORMAT=json`
/// switches to one JSON object per line for log shippers.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("DUALWRITE_LOG_FORMAT").is_ok_and(|v| v == "json");
    // try_init: tests may call this more than once per process.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

#[derive(Debug, thiserror::Error)]
#[error("starting the prometheus exporter on {addr}: {source}")]
pub struct MetricsError {
    addr: SocketAddr,
    source: metrics_exporter_prometheus::BuildError,
}

/// Serves `/metrics` on `addr` (127.0.0.1 by default in every binary).
/// Must be called inside a tokio runtime.
pub fn install_metrics(addr: SocketAddr) -> Result<(), MetricsError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Latencies as histograms (buckets), not per-process summaries, so they
    // aggregate across the processes of a group; 1 ms to 1 min.
    const SECONDS_BUCKETS: &[f64] =
        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|source| MetricsError { addr, source })?
        .install()
        .map_err(|source| MetricsError { addr, source })
}

/// A token cancelled by the first SIGINT or SIGTERM; a second one exits the
/// process at once (status 130) for operators who do not want to wait for a drain.
/// Must be called inside a tokio runtime.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    // Detached on purpose: it lives as long as the process and owns nothing.
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested, draining (signal again to exit at once)");
        trigger.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal, exiting without draining");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process can still be stopped by SIGKILL.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A TOML error as `line L, column C: message`, without the source line:
/// cluster and Kafka files may hold a password pasted in the wrong place.
pub fn toml_error_without_source(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

/// Writes `contents` to `path`, readable and writable by this user only
/// (mode 0600, also when the file already existed with a wider mode):
/// reports and exports name databases, keys and rows.
pub fn write_private(path: &std::path::Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_ref())
}

#[cfg(test)]
mod write_private_tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_even_when_they_existed_wider() {
        let path = std::env::temp_dir().join(format!("dw-private-{}", std::process::id()));
        std::fs::write(&path, "old, longer contents").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        super::write_private(&path, "new").expect("write_private");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::remove_file(&path).expect("rm");
        assert_eq!((mode, text.as_str()), (0o600, "new"));
    }
}
