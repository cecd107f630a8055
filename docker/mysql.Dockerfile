# sqlml on the official MySQL image, by default 9.7 (the LTS `make test` runs on; Oracle
# Linux 9). From the repository root:
#   docker build -f docker/mysql.Dockerfile -t sqlml-mysql:9.7 .
# MySQL 8.4 LTS (same UDF and plugin ABI; not run by `make test`, see docs/install.md's support matrix):
#   docker build -f docker/mysql.Dockerfile --build-arg MYSQL_IMAGE=mysql:8.4 -t sqlml-mysql:8.4 .
# Stage 1 builds sqlml into the venv /opt/sqlml on the same base image and records the
# exact packages of the Python it was linked against (install-sqlml.sh python-packages);
# stage 2 is the official image plus exactly those packages (python-runtime), the venv,
# and docker/install-sqlml.sh: `files` now (sqlml.so and sqlml.cnf into the plugin dir),
# `sql` at first start through the entrypoint's /docker-entrypoint-initdb.d hook, which
# fails the first start if sqlml_version() does not answer. The entrypoint and the mysql
# user are the image's own: mysqld still runs as mysql, never as root. Settings come
# from the environment (docker run -e SQLML_...; see docs/install.md "Docker images").
# Pin a digest for reproducible builds: --build-arg MYSQL_IMAGE=mysql:9.7@sha256:...
ARG MYSQL_IMAGE=mysql:9.7

FROM ${MYSQL_IMAGE} AS build
RUN set -eux; \
    microdnf install -y python3.11 python3.11-pip python3.11-devel gcc make; \
    microdnf clean all
COPY pyproject.toml CMakeLists.txt README.md /src/
COPY native /src/native
COPY python /src/python
COPY sql /src/sql
COPY docker/install-sqlml.sh /usr/local/bin/install-sqlml.sh
# pip fetches the build backend (scikit-build-core) and CMake from PyPI.
RUN set -eux; \
    python3.11 -m venv /opt/sqlml; \
    /opt/sqlml/bin/pip install --no-cache-dir --disable-pip-version-check /src; \
    /opt/sqlml/bin/sqlml version; \
    bash /usr/local/bin/install-sqlml.sh python-packages

FROM ${MYSQL_IMAGE}
COPY --from=build /opt/sqlml /opt/sqlml
COPY docker/install-sqlml.sh /usr/local/bin/install-sqlml.sh
COPY docker/initdb.d/50-sqlml.sh /docker-entrypoint-initdb.d/50-sqlml.sh
RUN set -eux; \
    chmod 0755 /usr/local/bin/install-sqlml.sh; \
    chmod 0644 /docker-entrypoint-initdb.d/50-sqlml.sh; \
    install-sqlml.sh python-runtime; \
    install-sqlml.sh files
