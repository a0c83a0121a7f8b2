# neuronmeet container image.
#
#   docker build -t neuronmeet .
#   docker run -e DATABASE_URL=... -e NATS_URL=... -e JWT_SECRET=... -p 8080:8080 neuronmeet
#
# See docker-compose.yml for a complete stack (PostgreSQL + NATS JetStream).
# Migrations are embedded in the binary (sqlx::migrate!) and applied by
# `neuronmeet serve` at start-up.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build
# Fail at compile time instead of trying to reach a database should sqlx
# query macros ever be used without prepared (.sqlx) metadata.
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true

# 1. Dependencies only: build the workspace with stub sources so that this
#    (slow) layer is cached until Cargo.toml / Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY aggregates/Cargo.toml aggregates/Cargo.toml
COPY projections/Cargo.toml projections/Cargo.toml
RUN mkdir -p src aggregates/src projections/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs aggregates/src/lib.rs projections/src/lib.rs \
 && cargo build --release --locked --bin neuronmeet \
 && rm -rf src aggregates/src projections/src

# 2. The real sources. COPY keeps the files' original mtimes, which can be
#    older than the stub build: touch them so cargo rebuilds our crates.
COPY src src
COPY aggregates aggregates
COPY projections projections
COPY migrations migrations
RUN find src aggregates projections migrations -type f -exec touch {} + \
 && cargo build --release --locked --bin neuronmeet \
 && install -D -m 0755 target/release/neuronmeet /out/neuronmeet

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 neuronmeet \
 && useradd --system --uid 10001 --gid neuronmeet --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin neuronmeet

COPY --from=builder /out/neuronmeet /usr/local/bin/neuronmeet

USER 10001:10001
ENV PORT=8080 \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080

# No HEALTHCHECK here: the slim image has no curl/wget. docker-compose.yml
# probes GET /healthz with bash's /dev/tcp instead.
ENTRYPOINT ["neuronmeet"]
CMD ["serve"]
