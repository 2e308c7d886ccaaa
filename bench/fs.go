package main

import (
	"os"
	"path/filepath"
	"strings"
)

// describeFS names the file system that holds dir: its type and device,
// and for ext4 whether it has a journal. Figures that create files are
// comparable only on the same kind: ext4 without a journal skips every
// free inode deleted in the last minute (five, while its inode table is
// not yet written back) when it allocates one, so creating files there
// after a mass delete (a bench run removes thousands) costs far more
// kernel time than on a journaled ext4 or xfs (BENCHMARKS.md).
func describeFS(dir string) string {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	m, ok := mountOf(string(info), abs)
	if !ok {
		return "unknown"
	}
	desc := m.fsType + " on " + m.source
	if m.fsType == "ext4" {
		// jbd2 lists each journaled device as <name>-<inode of its journal>.
		journals, _ := filepath.Glob(filepath.Join("/proc/fs/jbd2", filepath.Base(m.source)+"-*"))
		if len(journals) > 0 {
			desc += " (journal)"
		} else {
			desc += " (no journal)"
		}
	}
	return desc
}

// mount is one line of /proc/self/mountinfo, the fields describeFS needs.
type mount struct{ point, fsType, source string }

// mountOf is the mount in mountinfo (proc(5)'s format) whose mount point
// is the longest prefix of path, an absolute path without symlinks.
func mountOf(mountinfo, path string) (mount, bool) {
	var best mount
	found := false
	for line := range strings.Lines(mountinfo) {
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 2 {
			continue
		}
		point := unescapeMount(fields[4])
		if !within(path, point) || (found && len(point) <= len(best.point)) {
			continue
		}
		best, found = mount{point: point, fsType: tail[0], source: tail[1]}, true
	}
	return best, found
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
