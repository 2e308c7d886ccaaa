package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memInfo is a process's memory, from /proc/PID/status, in bytes.
type memInfo struct {
	HWM     int64 `json:"vmHWM"` // peak resident set since start
	RSS     int64 `json:"vmRSS"`
	Anon    int64 `json:"rssAnon"`
	File    int64 `json:"rssFile"`
	Shmem   int64 `json:"rssShmem"`
	Threads int   `json:"threads"`
}

// readMem reads /proc/pid/status.
func readMem(pid int) (memInfo, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	defer f.Close()
	var m memInfo
	fields := map[string]*int64{"VmHWM:": &m.HWM, "VmRSS:": &m.RSS, "RssAnon:": &m.Anon, "RssFile:": &m.File, "RssShmem:": &m.Shmem}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) < 2 {
			continue
		}
		if parts[0] == "Threads:" {
			m.Threads, _ = strconv.Atoi(parts[1])
			continue
		}
		if p := fields[parts[0]]; p != nil {
			kb, _ := strconv.ParseInt(parts[1], 10, 64)
			*p = kb << 10
		}
	}
	return m, sc.Err()
}

// countFDs is the number of open files of pid.
func countFDs(pid int) (int, error) {
	d, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(4096)
		n += len(names)
		if err != nil {
			break
		}
	}
	return n, nil
}

// sampler polls a process's open files and threads, keeping the peaks
// (VmHWM already is the peak of the resident set).
type sampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	peakFDs    int
	peakThread int
}

// startSampler polls pid every interval until stopped.
func startSampler(pid int, interval time.Duration) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// sample reads the files and threads once and keeps the peaks.
func (s *sampler) sample() {
	fds, err := countFDs(s.pid)
	if err != nil {
		return
	}
	m, _ := readMem(s.pid)
	s.mu.Lock()
	s.peakFDs = max(s.peakFDs, fds)
	s.peakThread = max(s.peakThread, m.Threads)
	s.mu.Unlock()
}

// finish stops the sampler and returns the peaks it saw.
func (s *sampler) finish() (fds, threads int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakFDs, s.peakThread
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuTime is the user plus system CPU time pid has used.
func cpuTime(pid int) (time.Duration, error) {
	user, sys, err := cpuTimes(pid)
	return user + sys, err
}

// cpuTimes is the user and the system CPU time pid has used.
func cpuTimes(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces; the fields start after its ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime) * time.Second / clockTicks, time.Duration(stime) * time.Second / clockTicks, nil
}
