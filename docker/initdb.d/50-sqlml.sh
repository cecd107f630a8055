# Sourced by the official MySQL / MariaDB image entrypoint at first start (empty
# datadir), while its temporary server runs: creates sqlml's SQL functions. It is not
# executable on purpose: the entrypoint sources non-executable hooks, so
# docker_process_sql (the entrypoint's client, which knows the root password) is defined.
# shellcheck shell=bash
# shellcheck source=docker/install-sqlml.sh
. "${SQLML_INSTALL_SCRIPT:-/usr/local/bin/install-sqlml.sh}"
sqlml_install_sql docker_process_sql --database=mysql
