package clusterproof_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
)

// The binaries TestMain builds once, without -race (the nodes are child
// processes; the race detector runs in this test process).
var serviceBin, fakeBin string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "clusterproof-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterproof:", err)
		os.Exit(1)
	}
	serviceBin, fakeBin = filepath.Join(tmp, "wss"), filepath.Join(tmp, "fakewa")
	fakeErr := make(chan error, 1)
	go func() { fakeErr <- e2e.BuildFake(fakeBin) }()
	err = e2e.Build(serviceBin)
	if ferr := <-fakeErr; err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterproof: build:", err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	if code == 0 {
		// The API clients' idle keep-alive connections are not leaks.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "clusterproof: goroutines left:", err)
			code = 1
		}
	}
	os.Exit(code)
}
