//! `dualwrite-cutover serve`: the query API over a router, until shutdown.

use cluster::config::ClusterConfig;
use mysql_async::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::collect::CollectConfig;
use crate::console::ConsoleConfig;
use crate::gates::Thresholds;
use crate::group::{Groups, GroupsDiffer};
use crate::guard::GuardConfig;
use crate::router::{Router, RouterConfig, RouterError};

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub old: ClusterConfig,
    pub new: ClusterConfig,
    pub router: RouterConfig,
    /// Token, deadlines and caps around every route.
    pub guard: GuardConfig,
    /// What the console (`/console`) collects and judges with.
    pub console: ConsoleOptions,
}

/// The console's inputs beyond the clusters: the broker for lag, and the gates' limits.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// Kafka settings for the lag section; without them it says so.
    pub kafka: Option<topics::kafka::KafkaConfig>,
    pub topic_prefix: String,
    pub shadow_period: std::time::Duration,
    pub thresholds: Thresholds,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cluster {0} has no [control] endpoint: the routing state lives there")]
    NoControl(String),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error(transparent)]
    Groups(#[from] GroupsDiffer),
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
}

/// The control database's pool: the new cluster file's `[control]`.
pub fn control_pool(new: &ClusterConfig) -> Result<Pool, ServeError> {
    let endpoint = new.control.as_ref().ok_or_else(|| ServeError::NoControl(new.name.clone()))?;
    Ok(Pool::new(cluster::pool::opts_for(endpoint, &new.auth)))
}

/// Serves the API on `listener` until `shutdown`; then drains requests,
/// stops the router (shadow reads joined, counts flushed, heartbeat removed).
pub async fn run(config: ServeConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let control = control_pool(&config.new)?;
    let options = config.console;
    let console = ConsoleConfig {
        collect: CollectConfig {
            old: config.old.clone(),
            new: config.new.clone(),
            control: control.clone(),
            kafka: options.kafka.ok_or_else(|| {
                "no Kafka configured for serve (--brokers or [kafka]): consumer lag needs the topics' end offsets"
                    .to_owned()
            }),
            topic_prefix: options.topic_prefix,
            shadow_period: options.shadow_period,
            groups: Groups::of_clusters(&config.old, &config.new)?,
        },
        thresholds: options.thresholds,
    };
    let router = Router::start(config.router, config.old, config.new, control).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "query api listening");
    let app = crate::guard::guard(crate::api::app(router.clone(), std::sync::Arc::new(console)), config.guard);
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    router.shutdown().await;
    served?;
    Ok(())
}
