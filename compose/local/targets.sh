# shellcheck shell=bash
# Sourced by demo, rehearse and monitor-test: Prometheus file-based service
# discovery for the processes a run starts. Each run owns one file,
# $DUALWRITE_STACK_DIR/prometheus/targets/<run>.json, rewritten atomically on
# every change and removed when the run ends, so the stack's Prometheus
# (`stack up --prometheus`) scrapes exactly what is running.

SD_ENTRIES=()

# A free TCP port on 127.0.0.1 below the ephemeral range (lowport.py says
# why); the process binds it next.
free_port() {
	python3 "$(dirname "${BASH_SOURCE[0]}")/lowport.py"
}

# sd_add RUN JOB HOST:PORT [label=value ...]: one scrape target with its labels.
sd_add() {
	local run=$1 job=$2 addr=$3 kv labels dir
	shift 3
	labels=$(printf '"job": "%s", "run": "%s"' "$job" "$run")
	for kv in "$@"; do
		labels+=$(printf ', "%s": "%s"' "${kv%%=*}" "${kv#*=}")
	done
	SD_ENTRIES+=("{\"targets\": [\"$addr\"], \"labels\": {$labels}}")
	dir=$DUALWRITE_STACK_DIR/prometheus/targets
	mkdir -p -- "$dir"
	local IFS=,
	printf '[%s]\n' "${SD_ENTRIES[*]}" >"$dir/.$run.json.tmp"
	mv -f -- "$dir/.$run.json.tmp" "$dir/$run.json"
}

# sd_remove RUN: the run's processes are gone.
sd_remove() {
	rm -f -- "$DUALWRITE_STACK_DIR/prometheus/targets/$1.json"
}
