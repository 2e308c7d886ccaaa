package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
)

// fakeWA is a running cmd/fakewa.
type fakeWA struct {
	*proc
	addr, control string
	caFile        string // the CA certificate it wrote (-ca-out)
}

// startFake starts cmd/fakewa on free loopback ports and waits until its
// control API answers. It serves TLS; its CA certificate goes to a file
// beside logPath.
func startFake(ctx context.Context, bin, logPath string) (*fakeWA, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	control, err := freeAddr()
	if err != nil {
		return nil, err
	}
	caFile := strings.TrimSuffix(logPath, ".log") + "-ca.pem"
	p, err := startProc("fakewa", bin, []string{"-addr", addr, "-control", control, "-ca-out", caFile}, nil, logPath)
	if err != nil {
		return nil, err
	}
	f := &fakeWA{proc: p, addr: addr, control: control, caFile: caFile}
	if err := waitHTTP(ctx, p, "http://"+control+"/stats", 10*time.Second); err != nil {
		f.stop(5 * time.Second)
		return nil, fmt.Errorf("fakewa: %w", err)
	}
	return f, nil
}

// serviceOpts is how a service process is started.
type serviceOpts struct {
	bin, sessionsDir, logPath string
	fake                      *fakeWA
	apiKey                    string
	// env adds or overrides variables (BACKOFF_MIN=100ms, ...).
	env []string
}

// service is a running whatsapp-sessions process.
type service struct {
	*proc
	addr string
	api  *client.Client

	mu       sync.Mutex
	finished *restoreLine // the "restore finished" log line, once seen
	gotDone  chan struct{}
	levels   map[string]int // log lines by level
	problems []string       // the first WARN and ERROR lines
}

// restoreLine is the service's "restore finished" log line (JSON logs:
// durations in nanoseconds).
type restoreLine struct {
	Time time.Time     `json:"time"`
	Took time.Duration `json:"took"`
}

// maxProblems is how many WARN/ERROR lines a service run keeps.
const maxProblems = 12

// startService starts the service in test mode against o.fake, with JSON
// logs, on a free port. It does not wait for anything.
func startService(o serviceOpts) (*service, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env := []string{
		"WHATSAPP_TEST_MODE=true",
		"FAKE_WA_ADDR=" + o.fake.addr,
		"FAKE_WA_CONTROL_URL=http://" + o.fake.control,
		"FAKE_WA_CA_FILE=" + o.fake.caFile,
		"SESSIONS_DIR=" + o.sessionsDir,
		"HTTP_ADDR=" + addr,
		"API_KEY=" + o.apiKey,
		"LOG_FORMAT=json",
	}
	env = append(env, o.env...)
	s := &service{addr: addr, gotDone: make(chan struct{}), levels: map[string]int{}}
	s.api = client.New("http://"+addr, o.apiKey).WithHTTPClient(&http.Client{Timeout: time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}})
	p, err := startProc("service", o.bin, nil, env, o.logPath)
	if err != nil {
		return nil, err
	}
	s.proc = p
	p.watch(s.onLine)
	return s, nil
}

// onLine counts a log line by level and picks out "restore finished".
func (s *service) onLine(line []byte) {
	var head struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
	}
	if json.Unmarshal(line, &head) != nil {
		head.Level = "NON-JSON"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.levels[head.Level]++
	if (head.Level == "WARN" || head.Level == "ERROR" || head.Level == "NON-JSON") && len(s.problems) < maxProblems &&
		!strings.Contains(head.Msg, "TEST MODE") {
		s.problems = append(s.problems, string(line))
	}
	if head.Msg == "restore finished" && s.finished == nil {
		var r restoreLine
		if json.Unmarshal(line, &r) == nil {
			s.finished = &r
			close(s.gotDone)
		}
	}
}

// restoreFinished is the "restore finished" line once seen, else nil.
func (s *service) restoreFinished() *restoreLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished
}

// logSummary is the service's log lines by level and its first problems.
func (s *service) logSummary() (map[string]int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	levels := make(map[string]int, len(s.levels))
	for k, v := range s.levels {
		levels[k] = v
	}
	return levels, append([]string(nil), s.problems...)
}

// waitHTTP polls url every 2 ms until it answers 200, the process exits, or
// timeout passes. It returns when the first 200 arrived.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.running() {
			return fmt.Errorf("%s exited before answering (%v); last lines:\n%s", p.name, p.waitErr, strings.Join(p.lastLines(), "\n"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s within %v", p.name, url, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// errExited means the service process ended while a scenario needed it.
var errExited = errors.New("service exited")
