# PostgreSQL 15 for machines without an image registry: what compose.yaml expects of
# the public `postgres:15` image, built from a local Debian base. Used by
# deploy/compose.offline.yaml (`cargo xtask e2e --compose`); on a machine with a
# registry compose.yaml uses `postgres:15` itself and this file is not needed.
#
# It honours the parts of the public image's contract compose.yaml relies on:
# POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD) for the superuser `postgres`,
# POSTGRES_DB (default postgres), PGDATA (default /var/lib/postgresql/data), the
# scripts in /docker-entrypoint-initdb.d (*.sql, *.sql.gz, *.sh) run once on an empty
# data directory with ON_ERROR_STOP, scram-sha-256 for every TCP connection, and
# `pg_isready` on the PATH. It runs as the `postgres` user from the start (the public
# image starts as root and drops privileges).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG INSTALL_PACKAGES=true
RUN if [ "$INSTALL_PACKAGES" = true ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends postgresql-15 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
 && chmod 0700 /var/lib/postgresql/data
COPY deploy/postgres-offline/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
