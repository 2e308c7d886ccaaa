package main

import (
	"strings"
	"testing"

	"github.com/prometheus/procfs"
)

func TestMountOfTakesTheLongestMountPoint(t *testing.T) {
	mounts := []*procfs.MountInfo{
		{MountPoint: "/", FSType: "ext4", Source: "/dev/vda"},
		{MountPoint: "/dev/shm", FSType: "tmpfs", Source: "tmpfs"},
		{MountPoint: "/mnt/j", FSType: "ext4", Source: "/dev/loop0"},
		{MountPoint: `/mnt/j/with\040space`, FSType: "tmpfs", Source: "none"},
		{MountPoint: "/mnt/jx", FSType: "xfs", Source: "/dev/sdb1"},
	}
	for _, tc := range []struct{ path, source string }{
		{"/tmp/wss-bench", "/dev/vda"},
		{"/", "/dev/vda"},
		{"/mnt/j", "/dev/loop0"},
		{"/mnt/j/wss-bench/run", "/dev/loop0"},
		{"/mnt/jx/a", "/dev/sdb1"}, // not /mnt/j: a prefix of the name only
		{"/mnt/j/with space/x", "none"},
		{"/dev/shm/x", "tmpfs"},
	} {
		if m := mountOf(mounts, tc.path); m == nil || m.Source != tc.source {
			t.Errorf("mountOf(%q) = %+v; want the mount of %s", tc.path, m, tc.source)
		}
	}
	if m := mountOf(mounts[1:], "/x"); m != nil {
		t.Errorf("mountOf with no mount above the path = %+v, want nil", m)
	}
}

func TestDescribeFSNamesTheTypeOfThisMachinesTempDir(t *testing.T) {
	d := describeFS(t.TempDir())
	t.Logf("TempDir: %s", d)
	if d == "" || strings.HasPrefix(d, "unknown") {
		t.Fatalf("describeFS(TempDir) = %q, want a file system type", d)
	}
}
