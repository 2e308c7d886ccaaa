module go.mau.fi/libsignal

go 1.25.0

toolchain go1.26.3

require (
	filippo.io/edwards25519 v1.2.0
	golang.org/x/crypto v0.52.0
	google.golang.org/protobuf v1.36.11
)
