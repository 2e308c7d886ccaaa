// Package freeaddr finds loopback addresses nothing listens on, for the
// tests and the bench, which start servers and child processes on ports of
// their own choosing.
package freeaddr

import (
	"net"
	"testing"
)

// Pick is a loopback host:port nothing listens on now. Another process may
// take it before the caller listens on it; on loopback in a test that is
// rare enough.
func Pick() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// For is Pick for tb, which fails when there is no loopback.
func For(tb testing.TB) string {
	tb.Helper()
	addr, err := Pick()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}
