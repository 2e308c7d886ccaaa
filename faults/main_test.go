package faults_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Loop counts and sizes, with CI defaults that keep the package within
// about four minutes with -race on two cores. Raise them for a soak run.
var (
	kills        = flag.Int("kills", 10, "kill -9 iterations during a restore")
	killSessions = flag.Int("kill-sessions", 200, "stored sessions restored while being killed")
	killSeed     = flag.Int64("kill-seed", 0, "seed of the kill delays (0: from the clock, logged)")
	dropSessions = flag.Int("drop-sessions", 1000, "sessions dropped by the server at once")
	connectRate  = flag.Float64("connect-rate", 200, "CONNECT_RATE of the mass-drop test")
	connectBurst = flag.Int("connect-burst", 20, "CONNECT_BURST of the mass-drop test")
	termSessions = flag.Int("term-sessions", 200, "sessions connected when SIGTERM arrives")
)

// serviceBin is the service binary TestMain builds once.
var serviceBin string

func TestMain(m *testing.M) {
	if job := os.Getenv(helperEnv); job != "" {
		os.Exit(runHelper(job))
	}
	flag.Parse()
	tmp, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	serviceBin = filepath.Join(tmp, "wss")
	helper := filepath.Join(tmp, "faults-helper")
	helperErr := make(chan error, 1)
	go func() { helperErr <- buildHelper(helper) }()
	if err := buildService(serviceBin); err != nil {
		fmt.Fprintln(os.Stderr, "faults: build the service:", err)
		<-helperErr
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	if err := <-helperErr; err != nil {
		fmt.Fprintln(os.Stderr, "faults: seeding runs in process (slower under -race): build a race-free helper:", err)
	} else {
		helperBin = helper
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// buildService builds the module's main package into out. The binary is
// built without -race: the race detector would slow a thousand sessions
// down far more than it would find here; the service's own tests run it
// under -race in process.
func buildService(out string) error {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return fmt.Errorf("find the module root: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = strings.TrimSpace(string(root))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// buildHelper builds this package's tests without -race into out (see
// helperEnv). go test runs a package's tests in its directory.
func buildHelper(out string) error {
	if b, err := exec.Command("go", "test", "-c", "-o", out, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}
