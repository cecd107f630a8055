# sqlml on the official MySQL 8.4 LTS image (Oracle Linux 9). From the repository root:
#   docker build -f docker/mysql.Dockerfile -t sqlml-mysql:8.4 .
# Stage 1 builds sqlml into the venv /opt/sqlml on the same base image, so sqlml.so is
# linked against the libpython 3.11 that stage 2 installs. Stage 2 is the official image
# plus that runtime, the venv, and docker/install-sqlml.sh: `files` now (sqlml.so and
# sqlml.cnf into the plugin dir), `sql` at first start through the entrypoint's
# /docker-entrypoint-initdb.d hook. The entrypoint and the mysql user are the image's
# own: mysqld still runs as mysql, never as root. Settings come from the environment
# (docker run -e SQLML_...; see README "Docker images").
# Pin a digest for reproducible builds: --build-arg MYSQL_IMAGE=mysql:8.4@sha256:...
ARG MYSQL_IMAGE=mysql:8.4

FROM ${MYSQL_IMAGE} AS build
RUN set -eux; \
    microdnf install -y python3.11 python3.11-pip python3.11-devel gcc make; \
    microdnf clean all
COPY pyproject.toml CMakeLists.txt README.md /src/
COPY native /src/native
COPY python /src/python
COPY sql /src/sql
# pip fetches the build backend (scikit-build-core) and CMake from PyPI.
RUN set -eux; \
    python3.11 -m venv /opt/sqlml; \
    /opt/sqlml/bin/pip install --no-cache-dir --disable-pip-version-check /src; \
    /opt/sqlml/bin/sqlml version

FROM ${MYSQL_IMAGE}
RUN set -eux; \
    microdnf install -y python3.11; \
    microdnf clean all
COPY --from=build /opt/sqlml /opt/sqlml
COPY docker/install-sqlml.sh /usr/local/bin/install-sqlml.sh
COPY docker/initdb.d/50-sqlml.sh /docker-entrypoint-initdb.d/50-sqlml.sh
RUN set -eux; \
    chmod 0755 /usr/local/bin/install-sqlml.sh; \
    chmod 0644 /docker-entrypoint-initdb.d/50-sqlml.sh; \
    install-sqlml.sh files
