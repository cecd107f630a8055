#!/usr/bin/env bash
# install-sqlml.sh: how sqlml gets into a server, in two steps. The Docker images run
# exactly this script, and tests/test_docker.py runs it against the project's private
# MariaDB 10.11 and MySQL 9.7 servers, so what the images do is what the tests prove.
#
#   install-sqlml.sh files [PLUGIN_DIR]
#       As root, once (the image build): copy sqlml.so into the server's plugin dir and
#       write sqlml.cnf beside it naming the venv's python. PLUGIN_DIR defaults to the
#       plugin dir that mariadbd or mysqld on PATH reports. Fails if sqlml.so cannot
#       resolve libpython or another library on this system.
#   install-sqlml.sh sql CLIENT [ARG ...]
#       With the server running (the image's first start): run sql/install.sql through
#       the command-line client CLIENT ARG... (e.g. `mariadb -uroot -S /run/mysqld/mysqld.sock`)
#       and check that sqlml_version() answers with this build's version.
#
# Sourced, the script only defines sqlml_install_files and sqlml_install_sql: the
# images' first-start hook (docker/initdb.d/50-sqlml.sh) sources it so it can pass the
# entrypoint's own docker_process_sql, which knows the root password, as CLIENT.
#
# SQLML_VENV names the Python environment holding sqlml and boto3 (default /opt/sqlml).
# sqlml.cnf holds nothing but `python`: settings then come from the server's environment
# (SQLML_*, AWS_*), because a setting written in sqlml.cnf would override the environment.

sqlml_python() {
	echo "${SQLML_VENV:-/opt/sqlml}/bin/python"
}

sqlml_fail() {
	echo "install-sqlml.sh: $*" >&2
	return 1
}

# The plugin dir the server on PATH was built with (what `--verbose --help` reports,
# as the official images' entrypoints read their own settings).
sqlml_server_plugin_dir() {
	local server dir
	for server in mariadbd mysqld; do
		command -v "$server" >/dev/null 2>&1 || continue
		dir="$("$server" --verbose --help --log-bin-index="$(mktemp -u)" 2>/dev/null \
			| awk '$1 == "plugin-dir" && /^[^ \t]/ { print $2; exit }')"
		[ -n "$dir" ] || sqlml_fail "$server --verbose --help reported no plugin-dir" || return 1
		echo "${dir%/}"
		return 0
	done
	sqlml_fail "no mariadbd or mysqld on PATH: give the plugin dir (install-sqlml.sh files DIR)"
}

# Fails unless every library sqlml.so needs (libpython first) resolves on this system.
sqlml_check_loads() {
	local lib="$1" py="$2" deps
	if command -v ldd >/dev/null 2>&1; then
		deps="$(ldd "$lib" 2>&1)" || sqlml_fail "$lib cannot load here: $deps" || return 1
		case "$deps" in
			*"not found"*) sqlml_fail "$lib cannot load here:"$'\n'"$(grep 'not found' <<<"$deps")" || return 1 ;;
		esac
	else  # no ldd in a slim image: let the dynamic loader try
		"$py" -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$lib" \
			|| sqlml_fail "$lib cannot load here" || return 1
	fi
}

sqlml_install_files() {
	local plugin_dir="${1:-}" py
	py="$(sqlml_python)"
	[ -x "$py" ] || sqlml_fail "$py not found: set SQLML_VENV to the venv that holds sqlml" || return 1
	if [ -z "$plugin_dir" ]; then
		plugin_dir="$(sqlml_server_plugin_dir)" || return 1
	fi
	[ -d "$plugin_dir" ] || sqlml_fail "plugin dir $plugin_dir does not exist" || return 1
	# The installer's own functions: one format for sqlml.cnf, atomic replacement
	# (a running server keeps the library it has mapped).
	"$py" - "$plugin_dir" "$py" <<-'PY' || return 1
		import os, sys
		from sqlml import installer
		plugin_dir, python = sys.argv[1], sys.argv[2]
		with open(installer.library_file(), "rb") as f:
		    installer.write_atomically(os.path.join(plugin_dir, installer.LIBRARY), f.read())
		installer.write_atomically(os.path.join(plugin_dir, installer.CNF), installer.cnf_text({}, python).encode())
	PY
	sqlml_check_loads "$plugin_dir/sqlml.so" "$py" || return 1
	echo "install-sqlml.sh: sqlml.so and sqlml.cnf (python = $py) in $plugin_dir"
}

sqlml_install_sql() {
	[ "$#" -gt 0 ] || sqlml_fail "sql needs a client command, e.g. mariadb -uroot -S SOCKET" || return 1
	local py sql expected reported
	py="$(sqlml_python)"
	sql="$("$py" -c 'from sqlml import installer; print(installer.package_file("sql", "install.sql"))')" || return 1
	expected="$("$py" -c 'import sqlml; print(sqlml.__version__)')" || return 1
	"$@" < "$sql" || sqlml_fail "running $sql failed" || return 1
	# The first call boots Python inside the server: a broken environment fails here, loudly.
	reported="$("$@" -N -B -e 'SELECT CONVERT(sqlml_version() USING utf8mb4)')" \
		|| sqlml_fail "sqlml_version() failed after install.sql" || return 1
	case "$reported" in
		*"library $expected"*) echo "install-sqlml.sh: $reported" ;;
		*) sqlml_fail "the server reports '$reported', expected library $expected" || return 1 ;;
	esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	step="${1:-}"
	shift || true
	case "$step" in
		files) sqlml_install_files "$@" ;;
		sql) sqlml_install_sql "$@" ;;
		*)
			echo "usage: install-sqlml.sh files [PLUGIN_DIR] | sql CLIENT [ARG ...]" >&2
			exit 2
			;;
	esac
fi
