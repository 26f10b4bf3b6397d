# syntax=docker/dockerfile:1
# flashorder: orderd (the server) and orderbench (the load tester) as static
# binaries in a distroless image, run as a non-root user.
#
#   docker build -t flashorder .
#   docker run -p 8080:8080 -e ORDERD_ADMIN_TOKEN=secret flashorder
#   docker run --rm --entrypoint /usr/local/bin/orderbench flashorder -h

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so that a source change reuses the module layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: pure Go (the SQLite driver is too), so the binaries are static
# and run on distroless/static without a libc.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/... \
 && mkdir -p /data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# /data holds the SQLite file of the embedded default; mount a volume there.
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
WORKDIR /data
ENV ORDERD_LISTEN=:8080 \
    ORDERD_DB=sqlite:///data/flashorder.db \
    ORDERD_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
# No HEALTHCHECK: distroless has no shell or curl; let the orchestrator probe
# GET /healthz (liveness) and GET /readyz (readiness).
ENTRYPOINT ["/usr/local/bin/orderd"]
