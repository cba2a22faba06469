# backup-cron: the scheduler is the binary itself (`backup-cron run`), no cron daemon.
# Build from the repository root: docker build -f deploy/backup-cron.Dockerfile .
#
# Build arguments as in learning-worker.Dockerfile: public images and a cargo build
# by default; deploy/compose.offline.yaml selects a local debootstrap base with the
# packages in place and the binary built on the host.
ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
ARG PREBUILT=false
WORKDIR /src
COPY . .
RUN if [ "$PREBUILT" != true ]; then cargo build --release --locked -p backup-cron; fi \
 && install -D -m 0755 target/release/backup-cron /out/backup-cron

FROM ${RUNTIME_IMAGE}
ARG INSTALL_PACKAGES=true
# pg_dump must match the server's major version (compose runs PostgreSQL 15). The
# user is not called `backup`: Debian's base already has a system user of that name.
RUN if [ "$INSTALL_PACKAGES" = true ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin backup-cron \
 && mkdir /backups && chown backup-cron /backups && chmod 0700 /backups
COPY --from=build /out/backup-cron /usr/local/bin/backup-cron
USER 10001
ENV BACKUP_DIR=/backups \
    PG_DUMP=/usr/lib/postgresql/15/bin/pg_dump \
    LOG_FORMAT=json
VOLUME /backups
# Unhealthy when the newest successful backup is older than 26 h, or when the
# first run failed. Before the first run, `run` records its start in BACKUP_DIR and
# `status` counts that, so the start period only covers process start-up.
HEALTHCHECK --interval=10m --timeout=30s --start-period=2m \
  CMD ["backup-cron", "status", "--max-age", "26h"]
ENTRYPOINT ["backup-cron"]
CMD ["run"]
