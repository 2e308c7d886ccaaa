package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is a child process whose output goes to a log file, line by line,
// through watchers that may look at each line.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	logPath string
	exited  chan struct{} // closed when the process has been waited for
	waitErr error

	mu       sync.Mutex
	watchers []func(line []byte)
	tail     []string // the last lines, for error reports
	lines    int
	drained  chan struct{}
}

// tailLines is how many of the last log lines a proc keeps.
const tailLines = 40

// startProc starts bin with args and env (nothing inherited but PATH and
// HOME), its stdout and stderr appended to logPath.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	// The children die with the bench, even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{}), drained: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go p.pump(pr, lf)
	go func() {
		p.waitErr = cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	return p, nil
}

// pump copies the child's output to the log file and shows each line to
// the watchers. It must never stop reading: a child blocked on a full pipe
// would stall and skew every figure.
func (p *proc) pump(r io.Reader, lf *os.File) {
	defer close(p.drained)
	defer lf.Close()
	w := bufio.NewWriterSize(lf, 1<<16)
	defer w.Flush()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		w.Write(line)
		w.WriteByte('\n')
		p.mu.Lock()
		p.lines++
		p.tail = append(p.tail, string(line))
		if len(p.tail) > tailLines {
			p.tail = p.tail[len(p.tail)-tailLines:]
		}
		ws := p.watchers
		p.mu.Unlock()
		for _, f := range ws {
			f(line)
		}
	}
}

// watch calls f with every following output line, on the pump goroutine.
func (p *proc) watch(f func(line []byte)) {
	p.mu.Lock()
	p.watchers = append(p.watchers, f)
	p.mu.Unlock()
}

// lastLines is the process's last output lines.
func (p *proc) lastLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tail...)
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// lineCount is how many output lines the process has written so far.
func (p *proc) lineCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
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
		<-p.drained
		return time.Since(began), true
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		<-p.drained
		return time.Since(began), false
	}
}
