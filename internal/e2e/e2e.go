// Package e2e runs the whole service for end-to-end tests, in the test's
// process (through app.New) or as a child process (the built binary), with
// one API either way: start and wait until it listens, a typed client, its
// logs, a clean stop, a SIGTERM or a kill -9, and a restart on the same
// sessions directory. A fake WhatsApp server outside the service (NewFake)
// outlives its restarts, as WhatsApp does.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/lease"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// APIKey is the key every service run here requires.
const APIKey = "e2e-test-key-0123456789abcdef"

// Wait is how long a helper waits for a state by default.
const Wait = 20 * time.Second

// Fake is a fake WhatsApp server in the test process, with its control API
// on HTTP and its CA certificate in a file, as cmd/fakewa serves them.
type Fake struct {
	*fakeserver.Server
	ControlURL string
	CAFile     string
}

// NewFake starts a fake WhatsApp server that the test's cleanup stops.
func NewFake(t testing.TB, opts fakeserver.Options) *Fake {
	t.Helper()
	s, err := fakeserver.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctl := httptest.NewServer(s.ControlHandler())
	t.Cleanup(func() {
		ctl.Close()
		_ = s.Close()
	})
	caFile := filepath.Join(t.TempDir(), "fakewa-ca.pem")
	if err := os.WriteFile(caFile, s.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Fake{Server: s, ControlURL: ctl.URL, CAFile: caFile}
}

// Config is the service's configuration for a test on dir: test mode
// against f (or its own in-process fake if f is nil), JSON logs, short
// backoffs, a free loopback port.
func Config(dir string, f *Fake) config.Config {
	cfg := config.Config{
		HTTPAddr: "127.0.0.1:0", SessionsDir: dir, APIKey: APIKey, AutoRestore: true,
		Store: config.StoreSQLite, DatabaseMaxConns: 20,
		RestoreConcurrency: 64, ConnectRate: 1000, ConnectBurst: 100, StoreIdleTimeout: 2 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, BackoffReset: time.Minute,
		RestartBudget: 3, RestartWindow: time.Minute,
		RequestTimeout: 10 * time.Second, ShutdownTimeout: 10 * time.Second,
		LeaseTTL:   lease.DefaultTTL, // config's default (STORE=postgres)
		DeviceName: "e2e", LogLevel: "info", LogFormat: "json",
		TestMode:       true,
		WebhookTimeout: 10 * time.Second, WebhookRetryFor: 72 * time.Hour, WebhookKeep: 24 * time.Hour,
		WebhookAllowPrivate: true, // receivers in tests listen on loopback
	}
	if f != nil {
		cfg.FakeServerAddr, cfg.FakeControlURL, cfg.FakeCAFile = f.Addr(), f.ControlURL, f.CAFile
	}
	return cfg
}

// Env is cfg as the environment variables config.Load reads (every
// setting given, so that nothing in the caller's environment changes a
// run).
func Env(cfg config.Config) []string {
	v, ty := reflect.ValueOf(cfg), reflect.TypeOf(cfg)
	var env []string
	for i := range ty.NumField() {
		name := ty.Field(i).Tag.Get("envconfig")
		if name == "" {
			continue
		}
		env = append(env, name+"="+fmt.Sprint(v.Field(i).Interface()))
	}
	return env
}

// Logs collects a service's log lines.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Logs) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is every line so far.
func (b *Logs) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail is the last n lines, for failure messages.
func (b *Logs) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Records decodes every JSON log line.
func (b *Logs) Records() []map[string]any {
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

// Service is one run of the service.
type Service struct {
	T      testing.TB
	Config config.Config
	Bin    string // the binary of a child process; empty in process
	Env    []string
	Logs   *Logs
	Client *client.Client
	Base   string // http://host:port

	cancel context.CancelFunc // in process
	cmd    *exec.Cmd          // child process
	exited chan struct{}      // closed once the run ended
	err    error              // its error, read after exited
}

// Start runs the service in this process with cfg and waits until it
// listens; the test's cleanup stops it.
func Start(t testing.TB, cfg config.Config) *Service {
	t.Helper()
	s := &Service{T: t, Config: cfg, Logs: &Logs{}, exited: make(chan struct{})}
	a, err := app.New(cfg, s.Logs)
	if err != nil {
		t.Fatalf("start the service: %v\n%s", err, s.Logs.Tail(20))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.err = a.Run(ctx)
		close(s.exited)
	}()
	s.listening(a.Addr())
	t.Cleanup(func() { s.Stop() })
	return s
}

// StartProcess runs the binary bin with cfg as its environment (extra
// "NAME=value" entries last, winning) and waits until it listens; the
// test's cleanup kills it if still running.
func StartProcess(t testing.TB, bin string, cfg config.Config, extra ...string) *Service {
	t.Helper()
	s := &Service{T: t, Config: cfg, Bin: bin, Env: extra, Logs: &Logs{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append(append(os.Environ(), Env(cfg)...), extra...)
	s.cmd.Stdout, s.cmd.Stderr = s.Logs, s.Logs
	// If the test binary dies, so does the service.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.Kill)
	deadline := time.Now().Add(Wait)
	for {
		if m := listenLine.FindStringSubmatch(s.Logs.String()); m != nil {
			s.listening(m[1])
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("service exited before listening (%v):\n%s", s.err, s.Logs.Tail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not listen in time:\n%s", s.Logs.Tail(40))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var listenLine = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)

func (s *Service) listening(addr string) {
	s.Base = "http://" + addr
	s.Client = client.New(s.Base, s.Config.APIKey).WithHTTPClient(&http.Client{Timeout: 30 * time.Second})
}

// Restart starts the service again, the same way, on the same directory;
// s must have ended.
func (s *Service) Restart() *Service {
	s.T.Helper()
	if s.Bin != "" {
		return StartProcess(s.T, s.Bin, s.Config, s.Env...)
	}
	return Start(s.T, s.Config)
}

// Exited reports whether the run has ended.
func (s *Service) Exited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Stop ends the service cleanly (context cancelled, or SIGTERM) and checks
// it ended without an error. It is a no-op once the run ended.
func (s *Service) Stop() {
	s.T.Helper()
	if s.Exited() {
		return
	}
	if s.cmd != nil {
		if code, _ := s.Terminate(Wait); code != 0 {
			s.T.Fatalf("service exited %d after SIGTERM:\n%s", code, s.Logs.Tail(40))
		}
		return
	}
	s.cancel()
	select {
	case <-s.exited:
		if s.err != nil {
			s.T.Errorf("run returned %v", s.err)
		}
	case <-time.After(Wait):
		s.T.Errorf("service did not stop in time")
	}
}

// Kill sends SIGKILL (kill -9) to the child process and waits for it to
// be gone; a no-op once it exited.
func (s *Service) Kill() {
	if s.cmd == nil {
		s.T.Fatal("Kill needs a child process (StartProcess)")
	}
	if s.Exited() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.T.Errorf("service pid %d did not die after SIGKILL", s.cmd.Process.Pid)
	}
}

// Terminate sends SIGTERM to the child process and waits up to limit for
// it to exit; it returns the exit code (-1: killed by a signal) and how
// long it took.
func (s *Service) Terminate(limit time.Duration) (code int, took time.Duration) {
	s.T.Helper()
	began := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.T.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(limit):
		s.Kill()
		s.T.Fatalf("service did not exit within %v of SIGTERM:\n%s", limit, s.Logs.Tail(40))
	}
	took = time.Since(began)
	var ee *exec.ExitError
	switch {
	case s.err == nil:
		return 0, took
	case errors.As(s.err, &ee):
		return ee.ExitCode(), took
	}
	s.T.Fatalf("wait: %v", s.err)
	return 0, took
}

// PID is the child process's id.
func (s *Service) PID() int { return s.cmd.Process.Pid }

// Raw sends one request with the key and returns the answer whatever its
// status.
func (s *Service) Raw(method, path, body string, header http.Header) (int, []byte, http.Header) {
	s.T.Helper()
	resp, err := s.Client.Do(context.Background(), method, path, []byte(body), header)
	if err != nil {
		s.T.Fatalf("%s %s: %v\n%s", method, path, err, s.Logs.Tail(20))
	}
	return resp.Status, resp.Body, resp.Header
}

// Call sends one request and decodes its JSON answer, whatever its status.
func (s *Service) Call(method, path, body string) (int, map[string]any) {
	s.T.Helper()
	code, raw, _ := s.Raw(method, path, body, nil)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.T.Fatalf("%s %s: not JSON: %.300q", method, path, raw)
		}
	}
	return code, out
}

// Status is session id's status; anything but a 200 fails the test.
func (s *Service) Status(id string) sessions.Status {
	s.T.Helper()
	return Status(s.T, s.Client, id)
}

// Fleet is every session's status; an error fails the test.
func (s *Service) Fleet() sessions.Fleet {
	s.T.Helper()
	f, err := s.Client.Fleet(context.Background())
	if err != nil {
		s.T.Fatalf("fleet status: %v", err)
	}
	return f
}

// WaitState polls session id until it is in state (a 404 counts as not
// yet: the restore may not have found it).
func (s *Service) WaitState(id string, state sessions.State, timeout time.Duration) sessions.Status {
	s.T.Helper()
	var st sessions.Status
	WaitFor(s.T, timeout, fmt.Sprintf("session %s to be %s", id, state), func() (bool, string) {
		var err error
		st, err = s.Client.Status(context.Background(), id)
		if errors.Is(err, sessions.ErrNotFound) {
			return false, err.Error()
		}
		if err != nil {
			s.T.Fatalf("status of %s: %v", id, err)
		}
		return st.State == state, Show(st)
	}, s.Logs)
	return st
}

// WaitConnected polls the fleet until n sessions are connected.
func (s *Service) WaitConnected(n int, timeout time.Duration) sessions.Fleet {
	s.T.Helper()
	var f sessions.Fleet
	WaitFor(s.T, timeout, fmt.Sprintf("%d sessions connected", n), func() (bool, string) {
		f = s.Fleet()
		return f.Counts[sessions.StateConnected] == n, fmt.Sprint(f.Counts)
	}, s.Logs)
	return f
}

// StartPairing creates session id and waits until it shows a QR code.
func (s *Service) StartPairing(id string) {
	s.T.Helper()
	if _, created, err := s.Client.Create(context.Background(), id); err != nil || !created {
		s.T.Fatalf("create %s: created %v, %v", id, created, err)
	}
	s.WaitQR(id)
}

// WaitQR polls session id until it shows a QR code, and returns it.
func (s *Service) WaitQR(id string) sessions.QR {
	s.T.Helper()
	var qr sessions.QR
	WaitFor(s.T, Wait, "a QR code for "+id, func() (bool, string) {
		var err error
		qr, err = s.Client.QR(context.Background(), id)
		return err == nil, fmt.Sprint(err)
	}, s.Logs)
	return qr
}

// Pair creates session id and completes its pairing as the phone would.
func (s *Service) Pair(id string) sessions.Status {
	s.T.Helper()
	s.StartPairing(id)
	if _, err := s.Client.Test(context.Background(), id, "scan", sessions.TestParams{}); err != nil {
		s.T.Fatalf("scan %s: %v", id, err)
	}
	return s.WaitState(id, sessions.StateConnected, Wait)
}

// Metric is the value of one sample of /metrics (name, then label
// name/value pairs); an absent sample is 0.
func (s *Service) Metric(name string, labels ...string) float64 {
	s.T.Helper()
	mf, err := s.Client.Metrics(context.Background())
	if err != nil {
		s.T.Fatalf("metrics: %v", err)
	}
	v, _ := client.Sample(mf, name, labels...)
	return v
}

// Show is a status as one line of JSON, for failure messages.
func Show(st sessions.Status) string {
	b, _ := json.Marshal(st)
	return string(b)
}

// ErrCode is the code of st's error, or "".
func ErrCode(st sessions.Status) sessions.Code {
	if st.Error == nil {
		return ""
	}
	return st.Error.Code
}

// User is the phone-number part of st's JID, as the fake server names a
// device's account ("" when not paired).
func User(st sessions.Status) string {
	user, _, _ := strings.Cut(JID(st), "@")
	user, _, _ = strings.Cut(user, ":")
	return user
}

// WaitFor polls cond until it holds or timeout passes; cond returns what
// it saw, for the failure message. logs, if given, are shown on failure.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string), logs ...*Logs) {
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
				tail += "\nservice log tail:\n" + l.Tail(30)
			}
			t.Fatalf("timed out after %v waiting for %s; last seen: %s%s", timeout, what, seen, tail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Build builds the service binary (the module's main package) to out.
func Build(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

// moduleRoot is the directory of go.mod, from `go env GOMOD`.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(b))), nil
}

// JID is st's JID, or "" when not paired.
func JID(st sessions.Status) string {
	if st.JID == nil {
		return ""
	}
	return *st.JID
}
