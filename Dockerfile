# glitchtip-exporter: one static binary on a distroless base.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse --short=12 HEAD)" \
#     -t glitchtip-exporter .
#   docker run -p 10099:10099 -v gte-state:/var/lib/glitchtip-exporter \
#     glitchtip-exporter --target https://glitchtip.example.com
#
# The build stage runs scripts/container-build.sh, the same static, non-PIE build as
# scripts/build.sh (--locked); the test suite runs this file's RUN lines as written.

FROM docker.io/library/rust:1.95-slim-bookworm AS build
ARG REVISION=unknown
ARG OUT_DIR=/out
ENV GLITCHTIP_EXPORTER_REVISION=${REVISION}
WORKDIR /src
COPY . .
RUN scripts/container-build.sh "${OUT_DIR}"

# distroless static: CA certificates, /etc/passwd with the nonroot user (65532), no shell.
# Host names are looked up through /etc/hosts and DNS only (the binary's own setting).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="glitchtip-exporter" \
      org.opencontainers.image.description="Prometheus exporter that watches self-hosted GlitchTip from the outside" \
      org.opencontainers.image.source="https://github.com/glitchtip-exporter/glitchtip-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/glitchtip-exporter /usr/local/bin/glitchtip-exporter
COPY --from=build --chown=65532:65532 /out/state /var/lib/glitchtip-exporter
# Heartbeat state lives in the volume; every other path is read-only.
ENV GLITCHTIP_EXPORTER__SERVER__STATE_FILE=/var/lib/glitchtip-exporter/state.json
VOLUME ["/var/lib/glitchtip-exporter"]
USER 65532:65532
EXPOSE 10099
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/glitchtip-exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/glitchtip-exporter"]
