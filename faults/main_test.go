package faults_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
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
	if err := e2e.Build(serviceBin); err != nil {
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

// buildHelper builds this package's tests without -race into out (see
// helperEnv). go test runs a package's tests in its directory.
func buildHelper(out string) error {
	if b, err := exec.Command("go", "test", "-c", "-o", out, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}
