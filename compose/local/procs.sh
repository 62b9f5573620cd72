# Sourced by compose/local/demo and compose/local/rehearse: stopping the
# processes a script started.

# stop_pid PID: SIGTERM, then SIGKILL if the process has not exited within 60 s.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 300; i++)); do
		[[ -e /proc/$pid ]] && ! grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null || return 0
		sleep 0.2
	done
	echo "pid $pid did not stop within 60 s: SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

# stop_newest_first PID...: the processes in reverse order of start, so the
# consumers drain and commit while the broker still runs (a consumer whose
# broker is gone cannot leave its group cleanly).
stop_newest_first() {
	local all=("$@") i
	for ((i = ${#all[@]} - 1; i >= 0; i--)); do stop_pid "${all[i]}"; done
	wait 2>/dev/null || true
}
