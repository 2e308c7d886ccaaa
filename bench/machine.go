package main

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// machine describes where the figures were taken.
type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel"`
	MemTotal string `json:"memTotal"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	NoFile   uint64 `json:"rlimitNofile"` // RLIMIT_NOFILE the children got
	Commit   string `json:"commit,omitempty"`
	Dirty    bool   `json:"dirty,omitempty"` // uncommitted changes in the tree
}

// describeMachine reads /proc and asks git and go about the tree at root.
func describeMachine(root string, nofile uint64) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), NoFile: nofile}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := command(root, "go", "version"); err == nil {
		m.Go = out
	}
	if out, err := command(root, "git", "rev-parse", "--short", "HEAD"); err == nil {
		m.Commit = out
		st, _ := command(root, "git", "status", "--porcelain", "--untracked-files=no")
		m.Dirty = st != ""
	}
	return m
}

// procField is the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// command runs name in dir and returns its trimmed output.
func command(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}
