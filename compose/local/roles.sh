# shellcheck shell=bash
# Sourced by demo and rehearse: run every job under its own login (the
# stack's per-role users, cluster::roles) on a run's own databases.
#
#   role_files DIR RUN [EXTRA]   DIR/<role>/<cluster>.toml for old and new: the
#                                stack's role files pointed at databases RUN and
#                                RUN_ctl, with the file EXTRA appended if given
#   grant_roles BIN DIR C        every role's grants on cluster C's (old or new)
#                                databases, with the administrator's DIR/C.toml
#                                (after `dualwrite-cluster schema` on it)

DW_ROLES=(consumer retention verify copier operator reader)

role_files() { # dir run [extra]
	local dir=$1 run=$2 extra=${3:-} role c
	for role in "${DW_ROLES[@]}"; do
		mkdir -p "$dir/$role"
		for c in old new; do
			[ -f "$DUALWRITE_STACK_DIR/clusters/$role/$c.toml" ] ||
				{ echo "no $DUALWRITE_STACK_DIR/clusters/$role/$c.toml: run compose/local/stack up" >&2; return 1; }
			sed -e "s|/dualwrite_control\"|/${run}_ctl\"|" -e "s|/dualwrite\"|/${run}\"|" \
				"$DUALWRITE_STACK_DIR/clusters/$role/$c.toml" >"$dir/$role/$c.toml"
			[ -z "$extra" ] || cat "$extra" >>"$dir/$role/$c.toml"
		done
	done
}

grant_roles() { # bin dir cluster
	local bin=$1 dir=$2 c=$3 role copier
	for role in consumer retention verify operator reader; do
		"$bin/dualwrite-cluster" grant --cluster "$dir/$c.toml" --role "$role" --user "dw_$role" \
			--host 127.0.0.1 >/dev/null || return 1
	done
	# the copier reads the old cluster's binlog and writes the new cluster
	if [ "$c" = old ]; then copier=copier-source; else copier=copier-target; fi
	"$bin/dualwrite-cluster" grant --cluster "$dir/$c.toml" --role "$copier" --user dw_copier \
		--host 127.0.0.1 >/dev/null
}
