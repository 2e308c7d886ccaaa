package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"syscall"
)

// binaries are the two programs under measurement, built from the tree.
type binaries struct {
	service string
	fakewa  string
}

// build compiles the service and cmd/fakewa from the module at root into
// binDir, so that every figure is for a plain `go build` of the tree.
func build(ctx context.Context, root, binDir string) (binaries, error) {
	b := binaries{service: filepath.Join(binDir, "whatsapp-sessions"), fakewa: filepath.Join(binDir, "fakewa")}
	for _, t := range []struct{ out, pkg string }{{b.service, "."}, {b.fakewa, "./cmd/fakewa"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", t.out, t.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %v\n%s", t.pkg, err, out)
		}
	}
	return b, nil
}

// raiseNoFile lifts RLIMIT_NOFILE to want for this process and so for the
// children it starts. Without CAP_SYS_RESOURCE the hard limit cannot go up,
// and the soft limit is raised to the hard one instead. It returns the
// limit now in force.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}); err == nil {
		return want, nil
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
