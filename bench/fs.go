package main

import (
	"path/filepath"
	"strings"

	"github.com/prometheus/procfs"
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
	var mounts []*procfs.MountInfo
	if err == nil {
		mounts, err = procfs.GetMounts()
	}
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	m := mountOf(mounts, abs)
	if m == nil {
		return "unknown"
	}
	desc := m.FSType + " on " + m.Source
	if m.FSType == "ext4" {
		// jbd2 lists each journaled device as <name>-<inode of its journal>.
		journals, _ := filepath.Glob(filepath.Join("/proc/fs/jbd2", filepath.Base(m.Source)+"-*"))
		if len(journals) > 0 {
			desc += " (journal)"
		} else {
			desc += " (no journal)"
		}
	}
	return desc
}

// mountUnescaper undoes mountinfo's octal escapes, which procfs keeps.
var mountUnescaper = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)

// mountOf is the mount whose mount point is the longest prefix of path,
// an absolute path without symlinks; nil if none is.
func mountOf(mounts []*procfs.MountInfo, path string) *procfs.MountInfo {
	var best *procfs.MountInfo
	bestLen := -1
	for _, m := range mounts {
		point := mountUnescaper.Replace(m.MountPoint)
		if within(path, point) && len(point) > bestLen {
			best, bestLen = m, len(point)
		}
	}
	return best
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}
