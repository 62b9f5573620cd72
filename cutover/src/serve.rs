//! `dualwrite-cutover serve`: the query API over a router, until shutdown.

use cluster::config::ClusterConfig;
use mysql_async::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cluster {0} has no [control] endpoint: the routing state lives there")]
    NoControl(String),
    #[error(transparent)]
    Router(#[from] RouterError),
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
    let router = Router::start(config.router, config.old, config.new, control).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "query api listening");
    let served = axum::serve(listener, crate::guard::guard(crate::api::app(router.clone()), config.guard))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    router.shutdown().await;
    served?;
    Ok(())
}
