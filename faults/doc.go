// Package faults holds the fault-injection suite: tests that run
// the service as a real process (built once by TestMain) against a fake
// WhatsApp server in the test process, and break it from outside: kill -9
// during a restore, corrupt, missing, read-only and symlinked stores, a full
// disk, a mass disconnect, and SIGTERM under load. After each fault they
// check that nothing is lost (the definition is above baseline, in
// lost_test.go). The package has no code of its own; everything is in its
// _test.go files.
//
// Run it as root (the full-disk tests mount a tmpfs, the read-only store
// needs chattr; without them those cases are skipped and say why):
//
//	go test -race ./faults/
//	go test -race ./faults/ -kills=50 -kill-sessions=500 -drop-sessions=2000
package faults
