# sqlml on the official MariaDB 11.8 LTS image (Ubuntu 24.04): the series `make test`
# runs on (leg mariadb118). From the repository root:
#   docker build -f docker/mariadb.Dockerfile -t sqlml-mariadb:11.8 .
# Stage 1 builds sqlml into the venv /opt/sqlml on the same base image and records the
# exact packages of the Python it was linked against (install-sqlml.sh python-packages:
# Ubuntu's python3.12 binary is linked statically, libpython comes in its own package);
# stage 2 is the official image plus exactly those packages (python-runtime), the venv,
# and docker/install-sqlml.sh: `files` now (sqlml.so and sqlml.cnf into the plugin dir),
# `sql` at first start through the entrypoint's /docker-entrypoint-initdb.d hook, which
# fails the first start if sqlml_version() does not answer. The entrypoint and the mysql
# user are the image's own: mariadbd still runs as mysql, never as root. Settings come
# from the environment (docker run -e SQLML_...; see docs/install.md "Docker images").
# Pin a digest for reproducible builds: --build-arg MARIADB_IMAGE=mariadb:11.8@sha256:...
ARG MARIADB_IMAGE=mariadb:11.8

FROM ${MARIADB_IMAGE} AS build
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc libc6-dev make; \
    rm -rf /var/lib/apt/lists/*
COPY pyproject.toml CMakeLists.txt README.md /src/
COPY native /src/native
COPY python /src/python
COPY sql /src/sql
COPY docker/install-sqlml.sh /usr/local/bin/install-sqlml.sh
# pip fetches the build backend (scikit-build-core) and CMake from PyPI.
RUN set -eux; \
    python3 -m venv /opt/sqlml; \
    /opt/sqlml/bin/pip install --no-cache-dir --disable-pip-version-check /src; \
    /opt/sqlml/bin/sqlml version; \
    bash /usr/local/bin/install-sqlml.sh python-packages

FROM ${MARIADB_IMAGE}
COPY --from=build /opt/sqlml /opt/sqlml
COPY docker/install-sqlml.sh /usr/local/bin/install-sqlml.sh
COPY docker/initdb.d/50-sqlml.sh /docker-entrypoint-initdb.d/50-sqlml.sh
RUN set -eux; \
    chmod 0755 /usr/local/bin/install-sqlml.sh; \
    chmod 0644 /docker-entrypoint-initdb.d/50-sqlml.sh; \
    install-sqlml.sh python-runtime; \
    install-sqlml.sh files
