package main

import (
	"strings"
	"testing"
)

const sampleMountinfo = `22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:26 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
41 22 7:0 / /mnt/j rw,relatime shared:20 - ext4 /dev/loop0 rw
42 41 0:40 / /mnt/j/with\040space rw - tmpfs none rw
43 22 0:41 / /mnt/jx rw - xfs /dev/sdb1 rw
`

func TestMountOfTakesTheLongestMountPoint(t *testing.T) {
	for _, tc := range []struct{ path, point, fsType, source string }{
		{"/tmp/wss-bench", "/", "ext4", "/dev/vda"},
		{"/", "/", "ext4", "/dev/vda"},
		{"/mnt/j", "/mnt/j", "ext4", "/dev/loop0"},
		{"/mnt/j/wss-bench/run", "/mnt/j", "ext4", "/dev/loop0"},
		{"/mnt/jx/a", "/mnt/jx", "xfs", "/dev/sdb1"}, // not /mnt/j: a prefix of the name only
		{"/mnt/j/with space/x", "/mnt/j/with space", "tmpfs", "none"},
		{"/dev/shm/x", "/dev/shm", "tmpfs", "tmpfs"},
	} {
		m, ok := mountOf(sampleMountinfo, tc.path)
		if !ok || m.point != tc.point || m.fsType != tc.fsType || m.source != tc.source {
			t.Errorf("mountOf(%q) = %+v, %v; want %s %s on %s", tc.path, m, ok, tc.point, tc.fsType, tc.source)
		}
	}
	if m, ok := mountOf("garbage\n", "/x"); ok {
		t.Errorf("mountOf on a line without fields = %+v, want none", m)
	}
}

func TestDescribeFSNamesTheTypeOfThisMachinesTempDir(t *testing.T) {
	d := describeFS(t.TempDir())
	t.Logf("TempDir: %s", d)
	if d == "" || strings.HasPrefix(d, "unknown") {
		t.Fatalf("describeFS(TempDir) = %q, want a file system type", d)
	}
}
