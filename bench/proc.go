package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
)

// proc is a child process, cmd/fakewa or the service, logging to a file.
type proc struct {
	name, logPath         string
	cmd                   *exec.Cmd
	started               time.Time
	exited                chan struct{} // closed once waited for
	waitErr               error
	addr, control, caFile string         // fakewa: TLS, control API, CA; service: HTTP
	api                   *client.Client // the service's API
}

// startProc starts bin with args and env (nothing inherited but PATH and
// HOME), its output going to logPath.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // they die with the bench
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, started: time.Now(), exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		lf.Close()
		close(p.exited)
	}()
	return p, nil
}

// startFake starts cmd/fakewa on free loopback ports, with env (the
// bench's -fakewa-env), and waits until its control API answers. Its CA
// certificate goes beside logPath.
func startFake(ctx context.Context, bin string, env []string, logPath string) (*proc, error) {
	addr, control, caFile := mustFreeAddr(), mustFreeAddr(), strings.TrimSuffix(logPath, ".log")+"-ca.pem"
	p, err := startProc("fakewa", bin, []string{"-addr", addr, "-control", control, "-ca-out", caFile}, env, logPath)
	if err != nil {
		return nil, err
	}
	p.addr, p.control, p.caFile = addr, control, caFile
	if err := p.waitHTTP(ctx, "http://"+control+"/stats", 10*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, err
	}
	return p, nil
}

// startService starts the service in test mode against fake, with JSON
// logs, on a free port. It does not wait for anything.
func startService(bin, sessionsDir, logPath, apiKey string, fake *proc, env []string) (*proc, error) {
	addr := mustFreeAddr()
	env = append([]string{"WHATSAPP_TEST_MODE=true", "FAKE_WA_ADDR=" + fake.addr,
		"FAKE_WA_CONTROL_URL=http://" + fake.control, "FAKE_WA_CA_FILE=" + fake.caFile,
		"SESSIONS_DIR=" + sessionsDir, "HTTP_ADDR=" + addr, "API_KEY=" + apiKey, "LOG_FORMAT=json"}, env...)
	p, err := startProc("service", bin, nil, env, logPath)
	if err != nil {
		return nil, err
	}
	p.addr = addr
	p.api = client.New("http://"+addr, apiKey).WithHTTPClient(&http.Client{Timeout: time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}})
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// tail is the last n lines of the process's log, for error reports.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. It returns how long it took.
func (p *proc) stop(grace time.Duration) time.Duration {
	began := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return time.Since(began)
}

// waitHTTP polls url every 2 ms until it answers 200, the process exits, or
// timeout passes.
func (p *proc) waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before answering (%v); last lines:\n%s", p.name, p.waitErr, p.tail(40))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer %s within %v", p.name, url, timeout)
}

// peakFDs polls pid's open files every 100 ms until stop is called,
// which returns the peak: a figure the service's own metrics cannot show
// (VmHWM already is the peak of the resident set).
func peakFDs(pid int) (stop func() int) {
	quit, peak := make(chan struct{}), make(chan int)
	go func() {
		p, _ := procfs.NewProc(pid)
		most := 0
		for t := time.NewTicker(100 * time.Millisecond); ; {
			if n, err := p.FileDescriptorsLen(); err == nil {
				most = max(most, n)
			}
			select {
			case <-quit:
				t.Stop()
				peak <- most
				return
			case <-t.C:
			}
		}
	}()
	return func() int { close(quit); return <-peak }
}

// cpuTimes is the user and system CPU time pid has used (0 if gone).
func cpuTimes(pid int) (user, sys time.Duration) {
	const userHZ = 100 // the unit of /proc/PID/stat times on every Linux Go supports
	p, err := procfs.NewProc(pid)
	st, err2 := p.Stat()
	if err != nil || err2 != nil {
		return 0, 0
	}
	return time.Duration(st.UTime) * time.Second / userHZ, time.Duration(st.STime) * time.Second / userHZ
}

// taken is the share of the CPUs that processes not the bench's used
// while a figure was measured, and the load average at its end.
type taken struct{ othersShare, load1 float64 }

// startWindow starts counting the CPU that others use: all CPUs' busy
// time from now on, minus that of the bench and of pids. end says what
// others took since; pids must still be running then.
func startWindow(pids ...int) (end func() taken) {
	pids = append(pids, os.Getpid())
	others := func() (d time.Duration, load float64) {
		fs, err := procfs.NewDefaultFS()
		if err != nil {
			return 0, 0
		}
		if st, err := fs.Stat(); err == nil {
			c := st.CPUTotal
			d = time.Duration((c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal) * float64(time.Second))
		}
		if la, err := fs.LoadAvg(); err == nil {
			load = la.Load1
		}
		for _, p := range pids {
			u, s := cpuTimes(p)
			d -= u + s
		}
		return d, load
	}
	began := time.Now()
	spent, _ := others()
	return func() taken {
		d, load := others()
		return taken{max(d-spent, 0).Seconds() / (time.Since(began).Seconds() * float64(runtime.NumCPU())), load}
	}
}

// mustFreeAddr is a loopback address nobody listens on now.
func mustFreeAddr() string {
	addr, err := freeaddr.Pick()
	if err != nil {
		panic(err) // no loopback: nothing here can run
	}
	return addr
}
