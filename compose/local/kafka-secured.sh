# Sourced by compose/local/rehearse (--broker nisshi) and compose/local/demo
# (--tls): a Nisshi broker that requires TLS and SASL SCRAM-SHA-512, with one
# user and one [kafka] file per job. Needs procs.sh (stop_pid) and a `pids`
# array (every process started is appended, so the caller stops it).

# nisshi_up DIR PORT [BROKER FLAGS...]: Nisshi on PORT, its sqlite storage in
# DIR/nisshi (a path relative to its working directory: an absolute one is
# joined to it), its log appended to DIR/broker.log; its pid in $nisshi_pid.
nisshi_up() {
	local dir=$1 port=$2 i
	shift 2
	(cd "$dir/nisshi" && exec "$nisshi_bin" broker --listener-url "tcp://127.0.0.1:$port" \
		--advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://nisshi.db "$@") \
		>>"$dir/broker.log" 2>&1 &
	nisshi_pid=$!
	pids+=("$nisshi_pid")
	for ((i = 0; i < 300; i++)); do
		# shellcheck disable=SC2016
		bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null && return 0
		[[ -e /proc/$nisshi_pid ]] || break
		sleep 0.1
	done
	echo "nisshi did not listen on 127.0.0.1:$port; log: $dir/broker.log" >&2
	tail -n 20 "$dir/broker.log" >&2
	return 1
}

# start_secured_nisshi DIR PORT: Nisshi requiring TLS (DIR/tls: the run's own
# CA and a certificate for 127.0.0.1 and localhost) and SCRAM-SHA-512. The
# users (admin: topics; producer; group-a; group-b; cutover: the lag gate
# and console) are created on a plain start, because Nisshi keeps them in
# its storage, by compose/local/kafka-scram-user, which reads each password
# from DIR/secrets/kafka-USER (0600; never on a command line); the broker is
# then restarted with --authentication. Writes DIR/kafka-USER.toml per user
# and sets brokers and the k_USER arrays (--kafka-config FILE) the jobs take.
start_secured_nisshi() {
	local dir=$1 port=$2 tls=$1/tls user p kept=()
	nisshi_bin=$(compose/local/nisshi)
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
	for user in admin producer group-a group-b cutover; do
		(umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/secrets/kafka-$user")
		compose/local/kafka-scram-user "$brokers" "dualwrite-$user" "$dir/secrets/kafka-$user"
		cat >"$dir/kafka-$user.toml" <<TOML
[kafka]
bootstrap = "$brokers"
security_protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "dualwrite-$user"
sasl_password_file = "secrets/kafka-$user"
ssl_ca_file = "tls/ca.pem"
TOML
	done
	stop_pid "$nisshi_pid"
	for p in "${pids[@]}"; do [[ $p == "$nisshi_pid" ]] || kept+=("$p"); done
	pids=("${kept[@]}")
	nisshi_up "$dir" "$port" --authentication --cert ../tls/server.pem --key ../tls/server-key.pem
	k_admin=(--kafka-config "$dir/kafka-admin.toml") k_producer=(--kafka-config "$dir/kafka-producer.toml")
	k_group_a=(--kafka-config "$dir/kafka-group-a.toml") k_group_b=(--kafka-config "$dir/kafka-group-b.toml")
	k_cutover=(--kafka-config "$dir/kafka-cutover.toml")
}
