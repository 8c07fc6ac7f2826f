# syntax=docker/dockerfile:1
# orderwatch: a release build in a Rust stage, shipped in a slim runtime as a
# non-root user. Build: docker build -t orderwatch .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so code changes do not rebuild them: the workspace's
# manifests with placeholder sources.
COPY Cargo.toml Cargo.lock ./
COPY crates/simulator/Cargo.toml ./crates/simulator/
COPY bench/Cargo.toml ./bench/
# Declared in Cargo.toml (criterion benchmarks; not built here).
COPY benches ./benches
RUN mkdir -p src crates/simulator/src bench/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs crates/simulator/src/lib.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && cargo build --release --locked -p orderwatch \
    && rm -rf src crates/simulator/src
COPY src ./src
COPY crates ./crates
# Touch so cargo sees the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs crates/simulator/src/lib.rs \
    && cargo build --release --locked -p orderwatch \
    && install -D -m 0755 target/release/orderwatch /out/orderwatch

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 orderwatch \
    && useradd --system --uid 10001 --gid orderwatch --home-dir /data --shell /usr/sbin/nologin orderwatch \
    && mkdir -p /data /etc/orderwatch \
    && chown orderwatch:orderwatch /data
COPY --from=build /out/orderwatch /usr/local/bin/orderwatch

ENV ORDERWATCH_CONFIG=/etc/orderwatch/orderwatch.yaml \
    ORDERWATCH_STATE_DIR=/data \
    ORDERWATCH_LISTEN=0.0.0.0:9464
USER orderwatch:orderwatch
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464
STOPSIGNAL SIGTERM
# No shell or curl needed: orderwatch asks its own /healthz.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/orderwatch", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/orderwatch"]
CMD ["run"]
