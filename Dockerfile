FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    # The server never needs root: it runs as an unprivileged account that owns only /data.
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin arenaxl \
    && mkdir -p /data /models /imports \
    && chown arenaxl:arenaxl /data
COPY --from=build /src/target/release/arenaxl /usr/local/bin/arenaxl
COPY --from=build /src/static /app/static
ENV ARENAXL_STATIC_DIR=/app/static
USER arenaxl
WORKDIR /data
EXPOSE 8080
CMD ["arenaxl", "serve", "--bind", "0.0.0.0:8080", "--data-dir", "/data"]
