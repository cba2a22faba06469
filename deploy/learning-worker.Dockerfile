# learning-worker. Build from the repository root:
#   docker build -f deploy/learning-worker.Dockerfile .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p learning-worker

FROM debian:bookworm-slim
# poppler-utils: pdftoppm, for rasterising PDFs without a text layer (local backend).
RUN apt-get update \
 && apt-get install -y --no-install-recommends poppler-utils ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --home-dir /nonexistent --shell /usr/sbin/nologin worker
COPY --from=build /src/target/release/learning-worker /usr/local/bin/learning-worker
USER worker
ENV WORKER_HEALTH_ADDR=0.0.0.0:9464 \
    LOG_FORMAT=json
EXPOSE 9464
# No curl in the slim image: bash's /dev/tcp speaks just enough HTTP for /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["learning-worker"]
CMD ["run"]
