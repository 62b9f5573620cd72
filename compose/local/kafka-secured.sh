# shellcheck shell=bash
# Sourced by compose/local/stack (up --tls), compose/local/rehearse (--broker
# nisshi) and compose/local/demo (--tls): a Nisshi broker that requires TLS
# and SASL SCRAM-SHA-512, with one SCRAM user and one [kafka] file per job.
# The pieces are shared (the broker's arguments, waiting for its listener,
# passwords, users, [kafka] files); how the process is kept differs: the
# stack's outlives `stack up` (setsid, a pid file, stopped by `stack down`),
# start_secured_nisshi's is stopped by the demo or rehearsal that started it
# (its `pids` array, procs.sh's stop_pid).

KAFKA_SECURED_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

# One SCRAM user per job, dualwrite-USER: admin (topics create,
# register-schemas), producer (loadtest produce and bench), group-a (the
# consumer into the old cluster), group-b (into the new one), cutover (the
# lag gate and the console).
KAFKA_USERS=(admin producer group-a group-b cutover)

# nisshi_binary: DUALWRITE_NISSHI, else compose/local/nisshi's (built once with
# the nightly toolchain, then cached).
nisshi_binary() {
	if [[ -n ${DUALWRITE_NISSHI:-} ]]; then
		printf '%s\n' "$DUALWRITE_NISSHI"
	else
		"$KAFKA_SECURED_DIR/nisshi"
	fi
}

# nisshi_args PORT [FLAGS...]: NISSHI_ARGS, the broker's arguments: loopback
# PORT, its sqlite storage nisshi.db in its working directory (a relative
# path: an absolute one is joined to the working directory), FLAGS after.
nisshi_args() {
	local port=$1
	shift
	NISSHI_ARGS=(broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port"
		--storage-engine sqlite://nisshi.db "$@")
}

# nisshi_secured_flags CERT KEY: the flags that make the listener require TLS
# (CERT, KEY: PEM) and SASL authentication (SCRAM; Nisshi refuses PLAIN).
nisshi_secured_flags() {
	NISSHI_SECURED_FLAGS=(--authentication --cert "$1" --key "$2")
}

# nisshi_listening PORT PID SECONDS: waits until 127.0.0.1:PORT accepts a
# connection; fails if PID (the broker) exits first or SECONDS pass.
nisshi_listening() {
	local port=$1 pid=$2 i
	for ((i = 0; i < $3 * 10; i++)); do
		# shellcheck disable=SC2016
		bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null && return 0
		[[ -e /proc/$pid ]] && ! grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# kafka_password FILE: a SCRAM password in FILE (24 letters and digits, mode
# 600), made only if FILE is missing or empty: a broker's users keep theirs.
kafka_password() {
	local pw=''
	[[ ! -s $1 ]] || return 0
	while ((${#pw} < 24)); do
		pw+=$(head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')
	done
	(umask 077 && printf '%s' "${pw:0:24}" >"$1.tmp")
	mv -f -- "$1.tmp" "$1"
}

# kafka_scram_user BOOTSTRAP USER PASSWORD_FILE: creates (or replaces) the
# SCRAM-SHA-512 user dualwrite-USER on a plaintext listener; the password is
# read from its file (compose/local/kafka-scram-user), never on argv.
kafka_scram_user() {
	"$KAFKA_SECURED_DIR/kafka-scram-user" "$1" "dualwrite-$2" "$3"
}

# kafka_toml BOOTSTRAP USER PASSWORD_FILE CA_FILE: the [kafka] table of
# dualwrite-USER on stdout (relative paths resolve against the file's
# directory, as topics::kafka reads them). No password in it: its file.
kafka_toml() {
	cat <<TOML
# [kafka] of dualwrite-$2: TLS + SCRAM-SHA-512 (--kafka-config FILE)
[kafka]
bootstrap = "$1"
security_protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "dualwrite-$2"
sasl_password_file = "$3"
ssl_ca_file = "$4"
TOML
}

# nisshi_up DIR PORT [BROKER FLAGS...]: Nisshi on PORT, its storage in
# DIR/nisshi, its log appended to DIR/broker.log; its pid in $nisshi_pid and
# appended to the caller's `pids`.
nisshi_up() {
	local dir=$1 port=$2
	shift 2
	nisshi_args "$port" "$@"
	(cd "$dir/nisshi" && exec "$nisshi_bin" "${NISSHI_ARGS[@]}") >>"$dir/broker.log" 2>&1 &
	nisshi_pid=$!
	pids+=("$nisshi_pid")
	nisshi_listening "$port" "$nisshi_pid" 30 && return 0
	echo "nisshi did not listen on 127.0.0.1:$port; log: $dir/broker.log" >&2
	tail -n 20 "$dir/broker.log" >&2
	return 1
}

# start_secured_nisshi DIR PORT: a throwaway Nisshi for one demo or rehearsal,
# requiring TLS (DIR/tls: the run's own CA and a certificate for 127.0.0.1
# and localhost) and SCRAM-SHA-512. Its users (KAFKA_USERS) are created on a
# plain start, because Nisshi keeps them in its storage, with each password
# read from DIR/secrets/kafka-USER (0600); the broker is then restarted with
# --authentication. Writes DIR/kafka-USER.toml per user and sets brokers and
# the k_USER arrays (--kafka-config FILE) the jobs take.
start_secured_nisshi() {
	local dir=$1 port=$2 tls=$1/tls user p kept=()
	nisshi_bin=$(nisshi_binary)
	mkdir -p "$dir/nisshi" "$dir/secrets" "$tls"
	chmod 700 "$dir/secrets" "$tls"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=dualwrite local Kafka CA" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
		-keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>>"$dir/openssl.log"
	openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server-key.pem" \
		-out "$tls/server.csr" 2>>"$dir/openssl.log"
	printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
		'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >"$tls/server.ext"
	openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
		-days 2 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>>"$dir/openssl.log"
	chmod 600 "$tls/ca-key.pem" "$tls/server-key.pem"
	brokers=127.0.0.1:$port
	nisshi_up "$dir" "$port"
	for user in "${KAFKA_USERS[@]}"; do
		kafka_password "$dir/secrets/kafka-$user"
		kafka_scram_user "$brokers" "$user" "$dir/secrets/kafka-$user"
		kafka_toml "$brokers" "$user" "secrets/kafka-$user" tls/ca.pem >"$dir/kafka-$user.toml"
	done
	stop_pid "$nisshi_pid"
	for p in "${pids[@]}"; do [[ $p == "$nisshi_pid" ]] || kept+=("$p"); done
	pids=("${kept[@]}")
	nisshi_secured_flags ../tls/server.pem ../tls/server-key.pem
	nisshi_up "$dir" "$port" "${NISSHI_SECURED_FLAGS[@]}"
	k_admin=(--kafka-config "$dir/kafka-admin.toml") k_producer=(--kafka-config "$dir/kafka-producer.toml")
	k_group_a=(--kafka-config "$dir/kafka-group-a.toml") k_group_b=(--kafka-config "$dir/kafka-group-b.toml")
	k_cutover=(--kafka-config "$dir/kafka-cutover.toml")
}
