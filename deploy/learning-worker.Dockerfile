# learning-worker. Build from the repository root:
#   docker build -f deploy/learning-worker.Dockerfile .
#
# The build arguments select where the parts come from. The defaults are the public
# images and a cargo build inside the first stage. Without a registry,
# deploy/compose.offline.yaml (used by `cargo xtask e2e --compose`) sets both images
# to a local base made with debootstrap that already has the runtime packages
# (INSTALL_PACKAGES=false) and copies the binary cargo built on the host
# (PREBUILT=true, target/release/learning-worker, let through by .dockerignore).
ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
ARG PREBUILT=false
WORKDIR /src
COPY . .
RUN if [ "$PREBUILT" != true ]; then cargo build --release --locked -p learning-worker; fi \
 && install -D -m 0755 target/release/learning-worker /out/learning-worker

FROM ${RUNTIME_IMAGE}
ARG INSTALL_PACKAGES=true
# poppler-utils: pdftotext and pdftoppm, for PDFs (Ollama backend).
RUN if [ "$INSTALL_PACKAGES" = true ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends poppler-utils ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10002 --home-dir /nonexistent --shell /usr/sbin/nologin worker
COPY --from=build /out/learning-worker /usr/local/bin/learning-worker
USER 10002
ENV WORKER_HEALTH_ADDR=0.0.0.0:9464 \
    LOG_FORMAT=json
EXPOSE 9464
# No curl in the image: bash's /dev/tcp speaks just enough HTTP for /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["learning-worker"]
CMD ["run"]
