# syntax=docker/dockerfile:1

# whatsapp-sessions: a static binary on distroless, running as a non-root user.
#
#   docker build -t whatsapp-sessions .
#   docker run -p 8080:8080 -v wa-data:/data -e API_KEY=... whatsapp-sessions
#
# No secret belongs in this file or in the build context: API_KEY is given at
# run time (see docs/observability.md). deploy/check-dockerfile.sh checks the
# properties below without a Docker engine.

FROM golang:1.26 AS build
WORKDIR /src

# Modules first, so that this layer is reused until go.mod or go.sum change
# (third_party holds the patched dependencies that go.mod's replaces point to).
COPY go.mod go.sum ./
COPY third_party ./third_party
RUN go mod download

COPY . .
# CGO_ENABLED=0: pure Go (SQLite is modernc.org/sqlite), so the binary runs on
# an image with no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/whatsapp-sessions .

# The data directory, created here because the runtime image has no shell.
# 0700 like every session directory: it holds WhatsApp credentials.
RUN mkdir -m 0700 /out/data


FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/whatsapp-sessions /whatsapp-sessions
# Owned by the nonroot user (65532), so a fresh named volume mounted on /data
# inherits an owner the service can write as.
COPY --from=build --chown=65532:65532 /out/data /data

ENV SESSIONS_DIR=/data HTTP_ADDR=:8080
VOLUME /data
EXPOSE 8080
USER 65532:65532

# distroless has no shell or curl: the binary probes its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/whatsapp-sessions", "-healthcheck"]

ENTRYPOINT ["/whatsapp-sessions"]
