# svcplane's image: one static-ish binary on a distroless base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p svcplane --bin svcplane

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/svcplane /usr/local/bin/svcplane
USER nonroot
ENTRYPOINT ["/usr/local/bin/svcplane"]
