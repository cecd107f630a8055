#!/usr/bin/env bash
# install-sqlml.sh: how sqlml gets into a server, in two steps. The Docker images run
# exactly this script, and tests/test_docker.py runs it against the project's private
# MariaDB 10.11 and 11.8 and MySQL 9.7 servers, so what the images do is what the tests prove.
#
#   install-sqlml.sh python-packages
#       In the build stage, after building the venv: record in $SQLML_VENV/python-packages
#       the exact system packages (name and version) of the interpreter the venv runs,
#       of its standard library and of the libpython sqlml.so is linked against, and in
#       $SQLML_VENV/python-version that interpreter's sys.version.
#   install-sqlml.sh python-runtime
#       In the runtime stage, with the venv copied in: install exactly those packages
#       (apt-get or microdnf), then fail unless the venv's python reports the recorded
#       version and sqlml.so resolves every library it needs.
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

# The packages owning the venv's interpreter, its standard library and sqlml.so's
# libpython, one `name=version` (dpkg) or NEVRA (rpm) a line.
sqlml_python_packages() {
	local py lib paths path
	py="$(sqlml_python)"
	[ -x "$py" ] || sqlml_fail "$py not found: set SQLML_VENV to the venv that holds sqlml" || return 1
	lib="$("$py" -c 'from sqlml import installer; print(installer.library_file())')" || return 1
	paths="$(readlink -f "$py")"$'\n'
	paths+="$("$py" -c 'import os, json, ssl; print(os.__file__); print(json.__file__); print(ssl.__file__)')" || return 1
	path="$(ldd "$lib" | awk '/libpython/ { print $3; exit }')"
	[ -n "$path" ] || sqlml_fail "$lib is not linked against a libpython ldd can resolve" || return 1
	paths+=$'\n'"$(readlink -f "$path")"
	while IFS= read -r path; do
		if command -v dpkg-query >/dev/null 2>&1; then
			dpkg-query -W -f='${Package}=${Version}\n' "$(dpkg -S "$path" | head -n1 | cut -d: -f1)"
		else
			rpm -qf --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n' "$path"
		fi || sqlml_fail "no system package owns $path" || return 1
	done <<<"$paths" | sort -u
}

sqlml_record_python() {
	local venv="${SQLML_VENV:-/opt/sqlml}" packages
	packages="$(sqlml_python_packages)" || return 1
	printf '%s\n' "$packages" >"$venv/python-packages"
	"$(sqlml_python)" -c 'import sys; print(sys.version)' >"$venv/python-version" || return 1
	echo "install-sqlml.sh: the venv's Python comes from:"$'\n'"$packages"
}

sqlml_install_python_runtime() {
	local venv="${SQLML_VENV:-/opt/sqlml}" py lib want got
	py="$(sqlml_python)"
	[ -s "$venv/python-packages" ] || sqlml_fail "$venv/python-packages missing: run python-packages in the build stage" || return 1
	mapfile -t want <"$venv/python-packages"
	if command -v apt-get >/dev/null 2>&1; then
		# Already there at exactly these versions (e.g. on a host): nothing to fetch.
		if [ "$(dpkg-query -W -f='${Package}=${Version}\n' "${want[@]%%=*}" 2>/dev/null | sort -u)" \
			!= "$(printf '%s\n' "${want[@]}" | sort -u)" ]; then
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
				"${want[@]}" && rm -rf /var/lib/apt/lists/* \
				|| sqlml_fail "could not install the build stage's Python packages: ${want[*]}" || return 1
		fi
	elif command -v microdnf >/dev/null 2>&1; then
		rpm -q "${want[@]}" >/dev/null 2>&1 || { microdnf install -y "${want[@]}" && microdnf clean all; } \
			|| sqlml_fail "could not install the build stage's Python packages: ${want[*]}" || return 1
	else
		sqlml_fail "neither apt-get nor microdnf here: install ${want[*]} yourself" || return 1
	fi
	got="$("$py" -c 'import sys; print(sys.version)')" || sqlml_fail "$py does not run" || return 1
	[ "$got" = "$(cat "$venv/python-version")" ] \
		|| sqlml_fail "sqlml was built against Python $(cat "$venv/python-version"), this image runs $got" || return 1
	lib="$("$py" -c 'from sqlml import installer; print(installer.library_file())')" || return 1
	sqlml_check_loads "$lib" "$py" || return 1
	echo "install-sqlml.sh: Python $got, as in the build stage"
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
	if ! "$@" < "$sql"; then
		# A plugin that refused to initialise says why through sqlml_version(), if that exists by now.
		reported="$("$@" -N -B -e 'SELECT CONVERT(sqlml_version() USING utf8mb4)' 2>/dev/null)" || reported=""
		sqlml_fail "running $sql failed${reported:+; the loaded library says: $reported}" || return 1
	fi
	# The first call boots Python inside the server: a broken environment fails here, loudly.
	reported="$("$@" -N -B -e 'SELECT CONVERT(sqlml_version() USING utf8mb4)')" \
		|| sqlml_fail "sqlml_version() failed after install.sql" || return 1
	case "$reported" in
		*"ABI MISMATCH"*) sqlml_fail "sqlml refuses this server: $reported" || return 1 ;;
		*"library $expected"*"untested"*) echo "install-sqlml.sh: warning: $reported" ;;
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
		python-packages) sqlml_record_python ;;
		python-runtime) sqlml_install_python_runtime ;;
		*)
			echo "usage: install-sqlml.sh files [PLUGIN_DIR] | sql CLIENT [ARG ...] | python-packages | python-runtime" >&2
			exit 2
			;;
	esac
fi
