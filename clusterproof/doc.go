// Package clusterproof holds the proofs of issue 12 as tests: three nodes
// (child processes of the service binary) on one Postgres and one etcd,
// with mutual TLS between them, against one external fake WhatsApp server
// (cmd/fakewa), sessions paired through their API; then kill -9, SIGTERM
// and a Postgres cut-off of a node, each checked against the fake server's
// per-device connection record (never two logged-in connections of one
// device at once, no stream replaced) and timed.
package clusterproof
