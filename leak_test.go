package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
	"go.uber.org/goleak"
)

// A session created and then deleted or stopped at once is closed while
// whatsmeow is still setting up its pairing. whatsmeow never closes the QR
// channel after a disconnect it was told to make, so whatever waits on
// that channel must end with the client, or every such session leaves a
// goroutine holding its client and keys behind (issue 9).

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// leakIgnores are the goroutines goleak may find after run returned that
// are not the service's (see TestNoGoroutineLeftAfterRun).
var leakIgnores = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver.(*Server).acceptLoop"),
	goleak.IgnoreAnyFunction("net/http/httptest.(*Server).goServe.func1"),
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
}

func TestCreateThenDeleteOrStopAtOnceLeavesNoGoroutine(t *testing.T) {
	for _, end := range []struct {
		name, method, suffix string
		codes                []int
	}{
		{"delete", "DELETE", "", []int{200}},
		{"stop", "POST", "/stop", []int{200}},
	} {
		t.Run(end.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			f := e2e.NewFake(t, fakeserver.Options{})
			svc := e2e.Start(t, e2e.Config(t.TempDir(), f))
			const rounds = 100
			for i := range rounds {
				id := fmt.Sprintf("%s%03d", end.name, i)
				if code, out := svc.Call("POST", "/api/whatsapp/session/"+id, ""); code != 202 {
					t.Fatalf("round %d: create: %d %v", i, code, out)
				}
				if i%2 == 1 {
					// Half the rounds end the session once it is pairing, when
					// whatsmeow's QR channel is surely set up.
					svc.WaitState(id, "pairing", e2e.Wait)
				}
				code, out := svc.Call(end.method, "/api/whatsapp/session/"+id+end.suffix, "")
				if code == http.StatusGatewayTimeout || !containsInt(end.codes, code) {
					t.Fatalf("round %d: %s %s: %d %v, want %v", i, end.method, end.suffix, code, out, end.codes)
				}
			}
			// While the service runs, no ended session's client is still
			// waited on.
			deadline := time.Now().Add(10 * time.Second)
			for goroutinesIn("(*client).forwardQR") > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines still forward QR codes of %d ended sessions", goroutinesIn("(*client).forwardQR"), rounds)
				}
				time.Sleep(10 * time.Millisecond)
			}
			svc.Stop()
			eventuallyOK(t, func() bool {
				st, err := f.Stats(context.Background())
				return err == nil && st.Live == 0
			})
			http.DefaultClient.CloseIdleConnections()
			goleak.VerifyNone(t, append([]goleak.Option{ignore}, leakIgnores...)...)
		})
	}
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
