package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"github.com/whatsapp-sessions/whatsapp-sessions/client"
)

// proc is a child process whose output goes to a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	logPath string
	exited  chan struct{} // closed once waited for and its output drained
	waitErr error
	// finished is closed when the service logs "restore finished", whose
	// line is then in finishedLine.
	finished     chan struct{}
	finishedLine []byte
}

// startProc starts bin with args and env (nothing inherited but PATH and
// HOME), its output going to logPath. It watches the output for the
// service's "restore finished" line: the service stamps it when every
// restored session has settled.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // they die with the bench
	out, err := cmd.StdoutPipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{}), finished: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		defer close(p.exited)
		// Never stop reading: a child blocked on a full pipe would stall.
		w := bufio.NewWriterSize(lf, 1<<16)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			w.Write(sc.Bytes())
			w.WriteByte('\n')
			if p.finishedLine == nil && bytes.Contains(sc.Bytes(), []byte(`"msg":"restore finished"`)) {
				p.finishedLine = bytes.Clone(sc.Bytes())
				close(p.finished)
			}
		}
		_, _ = io.Copy(w, out)
		w.Flush()
		lf.Close()
		p.waitErr = cmd.Wait()
	}()
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// restoreFinished is the time and "took" of the "restore finished" line
// (JSON logs: durations in nanoseconds), once seen.
func (p *proc) restoreFinished() (at time.Time, took time.Duration, ok bool) {
	select {
	case <-p.finished:
	default:
		return at, took, false
	}
	var r struct {
		Time time.Time     `json:"time"`
		Took time.Duration `json:"took"`
	}
	err := json.Unmarshal(p.finishedLine, &r)
	return r.Time, r.Took, err == nil
}

// tail is the last n lines of the process's log, for error reports.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. It returns how long the graceful part took and whether the
// process exited by itself.
func (p *proc) stop(grace time.Duration) (time.Duration, bool) {
	if !p.running() {
		return 0, true
	}
	began := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return time.Since(began), true
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return time.Since(began), false
	}
}

// fakeWA is a running cmd/fakewa: TLS on addr, its control API on
// control, its CA certificate in caFile.
type fakeWA struct {
	*proc
	addr, control, caFile string
}

// startFake starts cmd/fakewa on free loopback ports and waits until its
// control API answers.
func startFake(ctx context.Context, bin, logPath string) (*fakeWA, error) {
	f := &fakeWA{addr: freeAddr(), control: freeAddr(), caFile: strings.TrimSuffix(logPath, ".log") + "-ca.pem"}
	p, err := startProc("fakewa", bin, []string{"-addr", f.addr, "-control", f.control, "-ca-out", f.caFile}, nil, logPath)
	if err != nil {
		return nil, err
	}
	f.proc = p
	if err := waitHTTP(ctx, p, "http://"+f.control+"/stats", 10*time.Second); err != nil {
		f.stop(5 * time.Second)
		return nil, err
	}
	return f, nil
}

// service is a running whatsapp-sessions process and its API.
type service struct {
	*proc
	addr string
	api  *client.Client
}

// startService starts the service in test mode against fake, with JSON
// logs, on a free port. It does not wait for anything.
func startService(bin, sessionsDir, logPath, apiKey string, fake *fakeWA, env []string) (*service, error) {
	addr := freeAddr()
	env = append([]string{"WHATSAPP_TEST_MODE=true", "FAKE_WA_ADDR=" + fake.addr,
		"FAKE_WA_CONTROL_URL=http://" + fake.control, "FAKE_WA_CA_FILE=" + fake.caFile,
		"SESSIONS_DIR=" + sessionsDir, "HTTP_ADDR=" + addr, "API_KEY=" + apiKey, "LOG_FORMAT=json"}, env...)
	p, err := startProc("service", bin, nil, env, logPath)
	if err != nil {
		return nil, err
	}
	api := client.New("http://"+addr, apiKey).WithHTTPClient(&http.Client{Timeout: time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}})
	return &service{proc: p, addr: addr, api: api}, nil
}

// waitHTTP polls url every 2 ms until it answers 200, the process exits, or
// timeout passes.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.running() {
			return fmt.Errorf("%s exited before answering (%v); last lines:\n%s", p.name, p.waitErr, p.tail(40))
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

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // no loopback: nothing here can run
	}
	defer ln.Close()
	return ln.Addr().String()
}

// sampler polls a process's open files every sampleEvery, keeping the
// peak, which the service's own metrics cannot show (VmHWM already is the
// peak of the resident set).
type sampler struct {
	stop, done chan struct{}
	peak       atomic.Int64
}

// startSampler polls pid until finish.
func startSampler(pid int) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	p, err := procfs.NewProc(pid)
	go func() {
		defer close(s.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for err == nil {
			if fds, err := p.FileDescriptorsLen(); err == nil && int64(fds) > s.peak.Load() {
				s.peak.Store(int64(fds))
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops the sampler and returns the peak it saw.
func (s *sampler) finish() int {
	close(s.stop)
	<-s.done
	return int(s.peak.Load())
}

// cpuTimes is the user and system CPU time pid has used.
func cpuTimes(pid int) (user, sys time.Duration) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0, 0
	}
	const userHZ = 100 // the unit of /proc/PID/stat times on every Linux Go supports
	return time.Duration(st.UTime) * time.Second / userHZ, time.Duration(st.STime) * time.Second / userHZ
}

// taken is how busy the machine was with other work while a figure was
// measured: the CPU time processes other than the bench's used (OtherCPU),
// that as a share of the machine's capacity, and the 1-minute load
// average at the end. Figures taken while others were busy read high.
type taken struct {
	OtherCPU    dur     `json:"otherCpuMs"`
	OthersShare float64 `json:"othersShare"`
	Load1       float64 `json:"loadAvg1"`
}

// cpuWindow measures the CPU that others use from its start on.
type cpuWindow struct {
	began   time.Time
	pids    []int
	machine time.Duration
	own     []time.Duration
}

// machineBusy is the CPU time all CPUs have spent not idle since boot.
func machineBusy() time.Duration {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0
	}
	st, err := fs.Stat()
	if err != nil {
		return 0
	}
	c := st.CPUTotal
	return time.Duration((c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal) * float64(time.Second))
}

// startWindow starts counting; pids are ours (the bench is added); a
// process started later is added with its whole CPU time.
func startWindow(pids ...int) *cpuWindow {
	w := &cpuWindow{began: time.Now(), machine: machineBusy()}
	for _, p := range append([]int{os.Getpid()}, pids...) {
		w.add(p, true)
	}
	return w
}

// add counts pid as ours, from now if already running, else from its start.
func (w *cpuWindow) add(pid int, fromNow bool) {
	var c time.Duration
	if fromNow {
		u, s := cpuTimes(pid)
		c = u + s
	}
	w.pids, w.own = append(w.pids, pid), append(w.own, c)
}

// taken is what others took since the start; our processes must still
// be running.
func (w *cpuWindow) taken() taken {
	d := machineBusy() - w.machine
	for i, p := range w.pids {
		u, s := cpuTimes(p)
		d -= u + s - w.own[i]
	}
	t := taken{OtherCPU: dur(max(d, 0))}
	if el := time.Since(w.began); el > 0 {
		t.OthersShare = time.Duration(t.OtherCPU).Seconds() / (el.Seconds() * float64(runtime.NumCPU()))
	}
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if la, err := fs.LoadAvg(); err == nil {
			t.Load1 = la.Load1
		}
	}
	return t
}
