# backup-cron: the scheduler is the binary itself (`backup-cron run`), no cron daemon.
# Build from the repository root: docker build -f deploy/backup-cron.Dockerfile .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p backup-cron

FROM debian:bookworm-slim
# pg_dump must match the server's major version (compose runs PostgreSQL 15).
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin backup \
 && mkdir /backups && chown backup /backups
COPY --from=build /src/target/release/backup-cron /usr/local/bin/backup-cron
USER backup
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
