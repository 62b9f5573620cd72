//! `dualwrite-cutover`: serve reads through the router; evaluate the gates;
//! switch, roll back and complete the cutover.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use cluster::config::ClusterConfig;
use cutover::collect::CollectConfig;
use cutover::gates::{self, Thresholds};
use cutover::group::Groups;
use cutover::ops::{self, OpsConfig, OpsError, SwitchAction, SwitchOutcome, SwitchRequest};
use cutover::{Role, RouterConfig, TableGroup};

#[derive(Parser)]
#[command(
    name = "dualwrite-cutover",
    version,
    about = "Route reads between the old and new clusters, gate and switch them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the query API through a read router until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Create the routing state (reads on the old cluster) if it is missing:
    /// run once as the operator before routers whose login may only read it.
    Init {
        #[command(flatten)]
        common: Common,
    },
    /// Evaluate and explain every gate; show the routing and the routers.
    Status {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        gates: GateArgs,
        /// Table groups the gates are evaluated for (default: all; the
        /// pipeline description's `group`s).
        #[arg(long = "table-group")]
        groups: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Switch reads to a cluster once every gate passes; waits for every live router.
    SwitchReads {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        gates: GateArgs,
        /// Cluster role to read from: new (gated) or old.
        #[arg(long)]
        to: Role,
        /// Table groups to switch (default: all; the pipeline description's `group`s).
        #[arg(long = "table-group")]
        groups: Vec<String>,
        /// Switch although gates fail (audited with --reason).
        #[arg(long, requires = "reason")]
        force: bool,
        #[arg(long)]
        reason: Option<String>,
        /// Show what would change, and the gates, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Send reads back to the old cluster at once (not gated).
    Rollback {
        #[command(flatten)]
        common: Common,
        /// Table groups to roll back (default: all).
        #[arg(long = "table-group")]
        groups: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Retire the old cluster: routers stop reading it; prints what is left to do.
    Complete {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
}

/// The two clusters of the move.
#[derive(Args)]
struct Clusters {
    /// Cluster file of the old cluster (group A).
    #[arg(long, env = "DUALWRITE_OLD_CLUSTER")]
    old: PathBuf,
    /// Cluster file of the new cluster (group B); its [control] holds the routing state.
    #[arg(long, env = "DUALWRITE_NEW_CLUSTER")]
    new: PathBuf,
    /// Use this control database instead of the new cluster file's.
    #[arg(long, env = "DUALWRITE_CONTROL_DATABASE")]
    control_database: Option<String>,
}

impl Clusters {
    fn load(&self) -> anyhow::Result<(ClusterConfig, ClusterConfig)> {
        let old = load(&self.old, None)?;
        let new = load(&self.new, self.control_database.as_deref())?;
        anyhow::ensure!(old.name != new.name, "--old and --new name the same cluster {:?}", old.name);
        Ok((old, new))
    }
}

#[derive(Args)]
struct Common {
    #[command(flatten)]
    clusters: Clusters,
    /// Who is making the change (audited); default $USER.
    #[arg(long, env = "DUALWRITE_OPERATOR")]
    operator: Option<String>,
    /// Longest wait for the routers' acknowledgements, per step.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    ack_timeout: Duration,
    /// Routers silent for longer than this are not waited for.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    liveness: Duration,
}

#[derive(Args)]
struct GateArgs {
    /// Kafka: the consumer groups' lag and coverage.
    #[command(flatten)]
    kafka: topics::kafka::KafkaArgs,
    /// The latest equivalence run must be younger than this.
    #[arg(long, default_value = "26h", value_parser = humantime::parse_duration)]
    verify_max_age: Duration,
    #[arg(long, default_value_t = 5.0)]
    copier_max_lag_seconds: f64,
    #[arg(long, default_value_t = 1000)]
    copier_max_lag_events: u64,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    copier_max_staleness: Duration,
    /// Shadow counts are summed over this recent period.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    shadow_period: Duration,
    #[arg(long, default_value_t = 0.0)]
    shadow_max_mismatch_rate: f64,
    #[arg(long, default_value_t = 50)]
    shadow_min_compared: u64,
    #[arg(long, default_value_t = 50_000)]
    lag_max_messages: i64,
    #[arg(long, default_value_t = 60.0)]
    lag_max_seconds: f64,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    clusters: Clusters,
    /// HTTP address of the query API.
    #[arg(long, env = "DUALWRITE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Prometheus endpoint.
    #[arg(long, env = "DUALWRITE_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    metrics_addr: SocketAddr,
    /// Names this router's heartbeat row (default: host-pid).
    #[arg(long, env = "DUALWRITE_ROUTER_ID")]
    router_id: Option<String>,
    /// How often the routing version is polled.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Longest a read waits for a switch in progress.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    max_wait: Duration,
    /// Fraction of reads also run on the other cluster and compared.
    #[arg(long, env = "DUALWRITE_SHADOW_FRACTION", default_value_t = 0.0)]
    shadow_fraction: f64,
    /// How often shadow counts are written to the control database.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    shadow_flush_interval: Duration,
    /// File holding the bearer token every route but /healthz requires
    /// (at least 16 characters; never on the command line).
    #[arg(long, env = "DUALWRITE_API_TOKEN_FILE")]
    token_file: PathBuf,
    /// Longest one API request may take (then 504).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// API requests handled at once; more are refused with 503.
    #[arg(long, default_value_t = 32)]
    max_in_flight: usize,
    /// Largest API response body in bytes; larger answers are refused with 503.
    #[arg(long, default_value_t = 8 << 20)]
    max_response_bytes: usize,
    /// What the console (`/console`) collects and judges with.
    #[command(flatten)]
    gates: GateArgs,
}

fn load(path: &PathBuf, control_database: Option<&str>) -> anyhow::Result<ClusterConfig> {
    ClusterConfig::load_redirected(path, None, control_database)
        .with_context(|| format!("loading cluster file {}", path.display()))
}

struct Loaded {
    old: ClusterConfig,
    new: ClusterConfig,
    /// The new cluster file: its `[kafka]` is the default Kafka setting.
    new_file: PathBuf,
    /// The read table groups both cluster files' pipeline describes.
    groups: Groups,
    ops: OpsConfig,
}

async fn setup(common: &Common) -> anyhow::Result<Loaded> {
    let (old, new) = common.clusters.load()?;
    let groups = Groups::of_clusters(&old, &new)?;
    cluster::pool::preflight(&old).await?;
    cluster::pool::preflight(&new).await?;
    let control = cutover::serve::control_pool(&new)?;
    cutover::state::ensure_schema(&control).await.context("creating the routing tables")?;
    let operator =
        common.operator.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".to_owned());
    cutover::state::ensure_initial(&control, &groups.all(), &old.name, &operator)
        .await
        .context("initial routing state")?;
    let ops = OpsConfig {
        old_name: old.name.clone(),
        groups: groups.all(),
        new_name: new.name.clone(),
        control,
        operator,
        ack_timeout: common.ack_timeout,
        liveness: common.liveness,
        poll: Duration::from_millis(10),
    };
    Ok(Loaded { old, new, new_file: common.clusters.new.clone(), groups, ops })
}

/// How long the lag gate's Kafka may take to answer at start: a report
/// (or a router) says an unreachable broker and goes on.
const KAFKA_PREFLIGHT: Duration = Duration::from_secs(10);

/// The lag gate's Kafka, checked once: a wrong setting is an error (one
/// line naming the broker, the cause and the setting: a non-zero exit); an
/// unreachable broker is `Ok(Err(why))`, for the gate to report.
async fn lag_kafka(
    args: &topics::kafka::KafkaArgs,
    new_file: &std::path::Path,
    new: &ClusterConfig,
) -> anyhow::Result<Result<topics::kafka::KafkaConfig, String>> {
    let kafka = match args.resolve_if_configured(Some(new_file)) {
        Ok(Some(kafka)) => kafka,
        Ok(None) => {
            return Ok(Err("no --brokers given (nor --kafka-config or [kafka]): consumer lag needs the topics' end \
                           offsets"
                .to_owned()))
        }
        Err(error) => return Ok(Err(error.to_string())),
    };
    let names = new.pipeline.topic_names(&args.topic_prefix);
    let probe =
        topics::preflight::Preflight { deadline: KAFKA_PREFLIGHT, ..topics::preflight::Preflight::bounded(names) };
    Ok(match kafka.preflight(probe).await? {
        topics::preflight::Reach::Ready => Ok(kafka),
        topics::preflight::Reach::Unreachable(why) => Err(format!("kafka {} unreachable: {why}", kafka.bootstrap)),
    })
}

async fn evaluate(
    loaded: &Loaded,
    args: &GateArgs,
    groups: &[TableGroup],
) -> anyhow::Result<(gates::GateInputs, Vec<gates::GateResult>)> {
    let collect = CollectConfig {
        old: loaded.old.clone(),
        new: loaded.new.clone(),
        control: loaded.ops.control.clone(),
        kafka: lag_kafka(&args.kafka, &loaded.new_file, &loaded.new).await?,
        topic_prefix: args.kafka.topic_prefix.clone(),
        shadow_period: args.shadow_period,
        groups: loaded.groups.clone(),
    };
    let thresholds = thresholds(args);
    let inputs = cutover::collect::collect(&collect).await;
    let results = gates::evaluate(&inputs, &thresholds, &loaded.groups, groups);
    Ok((inputs, results))
}

fn thresholds(args: &GateArgs) -> Thresholds {
    Thresholds {
        verify_max_age: args.verify_max_age,
        copier_max_lag_seconds: args.copier_max_lag_seconds,
        copier_max_lag_events: args.copier_max_lag_events,
        copier_max_staleness: args.copier_max_staleness,
        shadow_max_mismatch_rate: args.shadow_max_mismatch_rate,
        shadow_min_compared: args.shadow_min_compared,
        lag_max_messages: args.lag_max_messages,
        lag_max_seconds: args.lag_max_seconds,
    }
}

fn main() -> ExitCode {
    service::init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Refusals are answers, not failures of the tool: exit 2 so scripts can tell.
            let refused = error
                .downcast_ref::<OpsError>()
                .is_some_and(|e| matches!(e, OpsError::Refused(_) | OpsError::Gates(_)));
            eprintln!("error: {error:#}");
            if refused {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Init { common } => {
            let loaded = setup(&common).await?;
            let routing = cutover::state::load(&loaded.ops.control).await?;
            println!("routing state ready (version {}):", routing.version());
            for g in &routing.groups {
                println!("  {:<15} reads from {}", g.group.as_str(), g.active);
            }
            Ok(())
        }
        Command::Status { common, gates, groups, json } => {
            let loaded = setup(&common).await?;
            let groups = loaded.groups.parse_or_all(&groups)?;
            let (inputs, results) = evaluate(&loaded, &gates, &groups).await?;
            let routing = cutover::state::load(&loaded.ops.control).await?;
            let routers = cutover::state::routers(&loaded.ops.control).await?;
            let audit = cutover::state::audit_log(&loaded.ops.control, 10).await?;
            if json {
                let report = serde_json::json!({
                    "routing": routing,
                    "routers": routers,
                    "liveness_ms": common.liveness.as_millis() as u64,
                    "gates": results,
                    "all_gates_pass": results.iter().all(|g| g.passed),
                    "inputs": inputs,
                    "audit": audit,
                });
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            println!("routing (version {}):", routing.version());
            for g in &routing.groups {
                println!(
                    "  {:<15} reads from {}{}{}  (by {}: {})",
                    g.group.as_str(),
                    g.active,
                    g.pending.as_deref().map(|p| format!(", switching to {p}")).unwrap_or_default(),
                    g.retired.as_deref().map(|r| format!(", {r} retired")).unwrap_or_default(),
                    g.changed_by,
                    g.reason
                );
            }
            println!("routers:");
            for r in &routers {
                let live = if r.is_live(common.liveness) { "live" } else { "gone" };
                println!(
                    "  {:<30} {live:<4} version {} reads [{}], seen {} ms ago",
                    r.router_id,
                    r.version_seen,
                    r.may_read.join(","),
                    r.age_ms
                );
            }
            println!("gates for {}:", groups.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", "));
            for g in &results {
                println!("  {g}");
            }
            let verdict = if results.iter().all(|g| g.passed) { "every gate passes" } else { "gates failing" };
            println!("{verdict}");
            Ok(())
        }
        Command::SwitchReads { common, gates, to, groups, force, reason, dry_run } => {
            let loaded = setup(&common).await?;
            let groups = loaded.groups.parse_or_all(&groups)?;
            let results = if to == Role::New { evaluate(&loaded, &gates, &groups).await?.1 } else { Vec::new() };
            let request = SwitchRequest {
                to,
                groups,
                force,
                reason: reason.unwrap_or_else(|| format!("switch reads to {to}")),
                dry_run,
                action: SwitchAction::Switch,
            };
            for g in &results {
                println!("{g}");
            }
            report_switch(ops::switch(&loaded.ops, &request, &results).await?);
            Ok(())
        }
        Command::Rollback { common, groups, reason, dry_run } => {
            let loaded = setup(&common).await?;
            let request = SwitchRequest {
                to: Role::Old,
                groups: loaded.groups.parse_or_all(&groups)?,
                force: false,
                reason: reason.unwrap_or_else(|| "rollback".to_owned()),
                dry_run,
                action: SwitchAction::Rollback,
            };
            report_switch(ops::switch(&loaded.ops, &request, &[]).await?);
            Ok(())
        }
        Command::Complete { common, reason, dry_run } => {
            let loaded = setup(&common).await?;
            let outcome = ops::complete(&loaded.ops, reason.as_deref().unwrap_or("cutover complete"), dry_run).await?;
            let verb = if outcome.dry_run { "would retire" } else { "retired" };
            println!(
                "{verb} cluster {} (routing version {}); {} live routers no longer read it",
                outcome.retired,
                outcome.version,
                outcome.routers.len()
            );
            println!("left for the operator:");
            for step in &outcome.remaining {
                println!("  - {step}");
            }
            Ok(())
        }
    }
}

fn report_switch(outcome: SwitchOutcome) {
    match outcome {
        SwitchOutcome::Unchanged { groups } => {
            let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
            println!("nothing to do: {} already read from the target", names.join(", "));
        }
        SwitchOutcome::DryRun { changes, live_routers, failed_gates } => {
            for (group, from, to) in &changes {
                println!("would switch {group} from {from} to {to}");
            }
            println!("{} live routers would have to acknowledge", live_routers.len());
            if failed_gates.is_empty() {
                println!("every gate passes");
            } else {
                println!("{} gates fail: a real run would refuse without --force", failed_gates.len());
            }
        }
        SwitchOutcome::Switched { changes, version, elapsed_ms, prepare_ms, routers, forced } => {
            for (group, from, to) in &changes {
                println!("switched {group} from {from} to {to}{}", if forced { " (forced)" } else { "" });
            }
            println!(
                "routing version {version}; {} routers acknowledged; switch took {elapsed_ms:.1} ms (prepare {prepare_ms:.1} ms)",
                routers.len()
            );
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (old, new) = args.clusters.load()?;
    let guard = cutover::guard::GuardConfig {
        request_timeout: args.request_timeout,
        max_in_flight: args.max_in_flight,
        max_response_bytes: args.max_response_bytes,
        ..cutover::guard::GuardConfig::new(cutover::guard::load_token(&args.token_file)?)
    };
    cluster::pool::preflight(&old).await?;
    cluster::pool::preflight(&new).await?;
    service::install_metrics(args.metrics_addr)?;
    cutover::metrics::describe();
    let router_id = args.router_id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        format!("{host}-{}", std::process::id())
    });
    let mut router = RouterConfig::new(router_id);
    router.poll_interval = args.poll_interval;
    router.max_wait = args.max_wait;
    router.shadow_fraction = args.shadow_fraction;
    router.shadow_flush_interval = args.shadow_flush_interval;
    anyhow::ensure!((0.0..=1.0).contains(&args.shadow_fraction), "--shadow-fraction must be within 0..=1");
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let shutdown = service::shutdown_on_signals();
    let console = cutover::serve::ConsoleOptions {
        // Checked at start (a wrong setting stops the router); an unreachable
        // broker stays configured, and the console says so until it answers.
        kafka: match args.gates.kafka.resolve_if_configured(Some(args.clusters.new.as_path()))? {
            Some(kafka) => {
                // Unreachable is the console's to show, on every refresh.
                let _unreachable_for_now = lag_kafka(&args.gates.kafka, &args.clusters.new, &new).await?;
                Some(kafka)
            }
            None => None,
        },
        topic_prefix: args.gates.kafka.topic_prefix.clone(),
        shadow_period: args.gates.shadow_period,
        thresholds: thresholds(&args.gates),
    };
    cutover::serve::run(cutover::serve::ServeConfig { old, new, router, guard, console }, listener, shutdown).await?;
    Ok(())
}
