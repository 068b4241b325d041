FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/arenaxl /usr/local/bin/arenaxl
COPY --from=build /src/static /app/static
ENV ARENAXL_STATIC_DIR=/app/static
EXPOSE 8080
CMD ["arenaxl", "serve", "--bind", "0.0.0.0:8080", "--data-dir", "/data"]
