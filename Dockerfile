# permitgate container image: build with the Rust toolchain, run as a non-root user on a
# slim Debian with only CA certificates added (for S3 replication over https).
#   docker build -t permitgate .
#   docker run --rm -p 8443:8443 -p 9464:9464 -v /etc/permitgate:/etc/permitgate:ro permitgate
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The serving build: no demo, no PDF/PNG/QR encoders (Cargo.toml, feature "tools"), with
# jemalloc as its allocator (feature "jemalloc").
RUN cargo build --release --locked -p permitgate --no-default-features --features jemalloc \
 && strip target/release/permitgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin permitgate \
 && mkdir -p /var/lib/permitgate/state /var/lib/permitgate/trail \
 && chown -R permitgate:permitgate /var/lib/permitgate
COPY --from=build /src/target/release/permitgate /usr/local/bin/permitgate
USER 10001:10001
# 8443: partners (mTLS). 9464: /metrics, /healthz, /readyz (plain HTTP, cluster-internal).
EXPOSE 8443 9464
ENV PERMITGATE_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/permitgate"]
CMD ["serve", "--config", "/etc/permitgate/gateway.toml"]
