# shellcheck shell=bash
# Sourced by compose/local/stack: the stack's own Prometheus (Debian's
# `prometheus`, installed by compose/local/deps), started by `stack up
# --prometheus` (or DUALWRITE_STACK_PROMETHEUS=1), stopped by `down`.
#
# It scrapes whatever the demo, the rehearsal and the monitoring test write to
# $STATE_DIR/prometheus/targets/*.json (file-based service discovery, one file
# per run; see compose/local/targets.sh) and evaluates compose/prometheus/rules.
# Listens on 127.0.0.1:$DUALWRITE_STACK_PROMETHEUS_PORT (default base_port + 90),
# never on the package's default :9090.

PROMETHEUS_TIMEOUT=30

prometheus_port() {
	local port=${DUALWRITE_STACK_PROMETHEUS_PORT:-$((BASE_PORT + 90))}
	[[ $port =~ ^[0-9]{1,5}$ ]] && ((port >= 1024 && port <= 65535)) ||
		die "DUALWRITE_STACK_PROMETHEUS_PORT must be a port in 1024..65535, got '$port'"
	printf '%s\n' "$port"
}

# Is $1 the Prometheus of this state dir?
is_our_prometheus() {
	local a
	read_cmdline "$1" || return 1
	[[ ${CMDLINE[0]##*/} == prometheus ]] || return 1
	for a in "${CMDLINE[@]:1}"; do
		[[ $a != "--config.file=$STATE_DIR/prometheus/prometheus.yml" ]] || return 0
	done
	return 1
}

prometheus_pid() {
	local pid
	pid=$(read_pid_file "$STATE_DIR/prometheus/started.pid") || return 1
	is_our_prometheus "$pid" || return 1
	printf '%s\n' "$pid"
}

write_prometheus_config() {
	local dir=$STATE_DIR/prometheus
	mkdir -p -- "$dir/targets" "$dir/data"
	cat >"$dir/prometheus.yml.tmp" <<YAML
# written by compose/local/stack
global:
  scrape_interval: 5s
  evaluation_interval: 5s
  external_labels:
    stack: local
rule_files:
  - $REPO_ROOT/compose/prometheus/rules/*.yml
scrape_configs:
  - job_name: dualwrite
    # every file sets its targets' job (consumer, retention, ...) and labels
    file_sd_configs:
      - files: ['$dir/targets/*.json']
        refresh_interval: 5s
YAML
	install_file "$dir/prometheus.yml.tmp" "$dir/prometheus.yml"
}

start_prometheus() {
	local dir=$STATE_DIR/prometheus pid port deadline
	command -v prometheus >/dev/null 2>&1 || die "prometheus not found: run compose/local/deps"
	port=$(prometheus_port)
	check_fixed_port "$port" "prometheus: DUALWRITE_STACK_PROMETHEUS_PORT or base_port+90"
	write_prometheus_config
	if pid=$(prometheus_pid); then
		# picks up a changed config or rule file without a restart
		kill -HUP "$pid" 2>/dev/null || true
		PROMETHEUS_STATE=running
		return 0
	fi
	rm -f -- "$dir/started.pid"
	printf '=== %s stack: starting prometheus on 127.0.0.1:%s\n' "$(date -u +%FT%TZ)" "$port" >>"$dir/prometheus.log"
	setsid nohup prometheus --config.file="$dir/prometheus.yml" --web.listen-address="127.0.0.1:$port" \
		--storage.tsdb.path="$dir/data" --storage.tsdb.retention.time=2d \
		</dev/null >>"$dir/prometheus.log" 2>&1 9>&- &
	pid=$!
	printf '%s\n' "$pid" >"$dir/started.pid"
	deadline=$((SECONDS + PROMETHEUS_TIMEOUT))
	until curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; do
		if ! child_alive "$pid"; then
			tail_file "$dir/prometheus.log"
			die "prometheus exited during startup; log: $dir/prometheus.log"
		fi
		((SECONDS < deadline)) || {
			tail_file "$dir/prometheus.log"
			die "prometheus not ready on 127.0.0.1:$port within ${PROMETHEUS_TIMEOUT} s; log: $dir/prometheus.log"
		}
		sleep 0.2
	done
	is_our_prometheus "$pid" || die "pid $pid does not look like this stack's prometheus; log: $dir/prometheus.log"
	PROMETHEUS_STATE=started
	printf 'http://127.0.0.1:%s\n' "$port" >"$dir/url"
}
