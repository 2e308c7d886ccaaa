package faults_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const apiKey = "faults-test-key-0123456789abcdef"

// logBuffer collects a service process's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the last n lines, for failure messages.
func (b *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// records decodes every JSON log line.
func (b *logBuffer) records() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// service is one run of the service binary as a child process.
type service struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	logs *logBuffer

	exited  chan struct{} // closed once Wait returned
	waitErr error         // Wait's error, read after exited
}

// serviceEnv is the environment of a service run against f on dir: every
// setting the service reads is given, so that nothing in the caller's
// environment changes a run; extra ("NAME=value") entries come last and
// win.
func serviceEnv(f *fake, dir string, extra ...string) []string {
	env := append(os.Environ(),
		"WHATSAPP_TEST_MODE=true",
		"NODE_ENV=",
		"FAKE_WA_ADDR="+f.Addr(),
		"FAKE_WA_CONTROL_URL="+f.controlURL,
		"FAKE_WA_CA_FILE="+f.caFile,
		"SESSIONS_DIR="+dir,
		"HTTP_ADDR=127.0.0.1:0",
		"METRICS_ADDR=",
		"API_KEY="+apiKey,
		"AUTO_RESTORE_SESSIONS=true",
		"RESTORE_CONCURRENCY=64",
		"CONNECT_RATE=500",
		"CONNECT_BURST=50",
		"BACKOFF_MIN=50ms",
		"BACKOFF_MAX=1s",
		"BACKOFF_RESET=1m",
		"RESTART_BUDGET=5",
		"RESTART_WINDOW=1m",
		"REQUEST_TIMEOUT=10s",
		"SHUTDOWN_TIMEOUT=10s",
		"DEVICE_NAME=faults",
		"LOG_LEVEL=info",
		"LOG_FORMAT=json",
	)
	return append(env, extra...)
}

var listenLine = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)

// startService runs the service binary and waits until it listens. The
// process is killed and waited for when the test ends, whatever happened.
func startService(t *testing.T, f *fake, dir string, extra ...string) *service {
	t.Helper()
	s := &service{t: t, logs: &logBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(serviceBin)
	s.cmd.Env = serviceEnv(f, dir, extra...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	// If the test binary dies, so does the service.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.kill)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := listenLine.FindStringSubmatch(s.logs.String()); m != nil {
			s.base = "http://" + m[1]
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("service exited before listening (%v):\n%s", s.waitErr, s.logs.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not listen in time:\n%s", s.logs.tail(40))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill sends SIGKILL (kill -9) and waits for the process to be gone. It is
// a no-op once the process exited.
func (s *service) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("service pid %d did not die after SIGKILL", s.cmd.Process.Pid)
	}
}

// terminate sends SIGTERM and waits up to limit for the process to exit; it
// returns the exit code (-1: killed by a signal) and how long it took.
func (s *service) terminate(limit time.Duration) (code int, took time.Duration) {
	s.t.Helper()
	began := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(limit):
		s.kill()
		s.t.Fatalf("service did not exit within %v of SIGTERM:\n%s", limit, s.logs.tail(40))
	}
	took = time.Since(began)
	var ee *exec.ExitError
	switch {
	case s.waitErr == nil:
		return 0, took
	case errors.As(s.waitErr, &ee):
		return ee.ExitCode(), took
	}
	s.t.Fatalf("wait: %v", s.waitErr)
	return 0, took
}

// stop ends the service cleanly (SIGTERM) and checks it exited 0.
func (s *service) stop() {
	s.t.Helper()
	if code, _ := s.terminate(20 * time.Second); code != 0 {
		s.t.Fatalf("service exited %d after SIGTERM:\n%s", code, s.logs.tail(40))
	}
}

var client = &http.Client{Timeout: 15 * time.Second}

// do sends one request and returns the status code and the body.
func (s *service) do(method, path, body string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", method, path, err, s.logs.tail(20))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// call sends one API request and decodes its JSON answer.
func (s *service) call(method, path, body string) (int, map[string]any) {
	s.t.Helper()
	code, raw := s.do(method, path, body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: not JSON: %.300q", method, path, raw)
		}
	}
	return code, out
}

// sessionStatus is the part of a session's status these tests read.
type sessionStatus struct {
	SenderID   string  `json:"senderId"`
	State      string  `json:"state"`
	JID        string  `json:"jid"`
	PushName   *string `json:"pushName"`
	Since      string  `json:"since"`
	Reconnects int     `json:"reconnects"`
	Restarts   int     `json:"restarts"`
	UserAction string  `json:"userAction"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (st sessionStatus) errCode() string {
	if st.Error == nil {
		return ""
	}
	return st.Error.Code
}

func (st sessionStatus) String() string {
	b, _ := json.Marshal(st)
	return string(b)
}

type fleet struct {
	Sessions []sessionStatus `json:"sessions"`
	Counts   map[string]int  `json:"counts"`
	Restore  struct {
		Found    int `json:"found"`
		Restored int `json:"restored"`
		Failed   int `json:"failed"`
		Pending  int `json:"pending"`
	} `json:"restore"`
}

func (f fleet) byID() map[string]sessionStatus {
	out := make(map[string]sessionStatus, len(f.Sessions))
	for _, s := range f.Sessions {
		out[s.SenderID] = s
	}
	return out
}

func (s *service) fleet() fleet {
	s.t.Helper()
	code, raw := s.do("GET", "/api/whatsapp/sessions/status", "")
	var f fleet
	if code != 200 || json.Unmarshal(raw, &f) != nil {
		s.t.Fatalf("fleet status: %d %.300s", code, raw)
	}
	return f
}

func (s *service) status(id string) sessionStatus {
	s.t.Helper()
	code, raw := s.do("GET", "/api/whatsapp/session/"+id+"/status", "")
	var st sessionStatus
	if code != 200 || json.Unmarshal(raw, &st) != nil {
		s.t.Fatalf("status of %s: %d %.300s", id, code, raw)
	}
	return st
}

// waitState polls session id until it is in state.
func (s *service) waitState(id, state string, timeout time.Duration) sessionStatus {
	s.t.Helper()
	var st sessionStatus
	waitFor(s.t, timeout, fmt.Sprintf("session %s to be %s", id, state), func() (bool, string) {
		code, raw := s.do("GET", "/api/whatsapp/session/"+id+"/status", "")
		if code == 404 { // not discovered yet
			return false, string(raw)
		}
		st = sessionStatus{}
		if code != 200 || json.Unmarshal(raw, &st) != nil {
			s.t.Fatalf("status of %s: %d %.300s", id, code, raw)
		}
		return st.State == state, st.String()
	}, s.logs)
	return st
}

// waitConnected polls the fleet until n sessions are connected.
func (s *service) waitConnected(n int, timeout time.Duration) fleet {
	s.t.Helper()
	var f fleet
	waitFor(s.t, timeout, fmt.Sprintf("%d sessions connected", n), func() (bool, string) {
		f = s.fleet()
		return f.Counts["connected"] == n, fmt.Sprint(f.Counts)
	}, s.logs)
	return f
}

// pair creates session id and completes its pairing as the phone would.
func (s *service) pair(id string) sessionStatus {
	s.t.Helper()
	s.startPairing(id)
	if code, out := s.call("POST", "/api/whatsapp/test/session/"+id+"/scan", ""); code != 200 {
		s.t.Fatalf("scan %s: %d %v", id, code, out)
	}
	return s.waitState(id, "connected", 20*time.Second)
}

// startPairing creates session id and waits until it shows a QR code.
func (s *service) startPairing(id string) {
	s.t.Helper()
	if code, out := s.call("POST", "/api/whatsapp/session/"+id, ""); code != 202 {
		s.t.Fatalf("create %s: %d %v", id, code, out)
	}
	waitFor(s.t, 20*time.Second, "a QR code for "+id, func() (bool, string) {
		code, out := s.call("GET", "/api/whatsapp/session/"+id+"/qr", "")
		return code == 200, fmt.Sprint(code, out)
	}, s.logs)
}

// metric reads one sample of /metrics ("name{labels}"); absent is 0.
func (s *service) metric(series string) float64 {
	s.t.Helper()
	code, raw := s.do("GET", "/metrics", "")
	if code != 200 {
		s.t.Fatalf("metrics: %d", code)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				s.t.Fatalf("metric %s: %q", series, line)
			}
			return f
		}
	}
	return 0
}

// waitFor polls cond until it holds or timeout passes; cond returns what
// it saw, for the failure message. logs, if given, are shown on failure.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string), logs ...*logBuffer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var tail string
			for _, l := range logs {
				tail += "\nservice log tail:\n" + l.tail(30)
			}
			t.Fatalf("timed out after %v waiting for %s; last seen: %s%s", timeout, what, seen, tail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sprint(a ...any) string { return strings.TrimSpace(fmt.Sprintln(a...)) }
