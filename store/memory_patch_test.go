//go:build linux

package store_test

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
	"modernc.org/memory"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/patchcheck"
)

// SQLite's memory comes from modernc.org/memory (through modernc.org/libc's
// malloc); the service builds with third_party/modernc-memory, the pinned
// version plus third_party/modernc-memory.patch. These tests fail when
// either side moves: go.mod requiring another version, the patched files
// changing, the replace going away, or a pooled region keeping its first
// page resident again.

// memoryPatchedFiles are the files the patch changes, as patched.
var memoryPatchedFiles = map[string]string{
	"memory.go":        "44b6c48ab6b23bd85d517f13250832a08a8682c1ee851e782f52eade60f31858",
	"decommit_unix.go": "39e18490aced1747fee766b4f72b09ded217a9923c98b1054ba647c9b2c5fa2a",
}

func TestMemoryCopyIsThePinnedVersionPatched(t *testing.T) {
	patchcheck.Check(t, "..", patchcheck.Copy{Module: "modernc.org/memory", Dir: "third_party/modernc-memory",
		Patch: "third_party/modernc-memory.patch", Files: memoryPatchedFiles})
}

// Freed regions beyond the allocator's 4 MiB hot window give all their
// memory back, their header page included (upstream keeps that page
// resident: a sixteenth of the pool), and come back out of the pool
// whole: the right size, usable, and unmapped by Close.
func TestFreedRegionsGiveBackTheirHeaderPage(t *testing.T) {
	const (
		regions    = 200      // 64 KiB regions: 136 of them beyond the 4 MiB hot window
		size       = 60 << 10 // one allocation per 64 KiB region
		regionSize = 64 << 10
	)
	var a memory.Allocator
	defer a.Close()
	touch := func() []unsafe.Pointer {
		ps := make([]unsafe.Pointer, regions)
		for i := range ps {
			p, err := a.UnsafeMalloc(size)
			if err != nil {
				t.Fatal(err)
			}
			if us := memory.UnsafeUsableSize(p); us < size {
				t.Fatalf("a %d-byte allocation has %d usable bytes", size, us)
			}
			b := unsafe.Slice((*byte)(p), size)
			for j := 0; j < size; j += 4096 {
				b[j] = 1
			}
			ps[i] = p
		}
		return ps
	}
	free := func(ps []unsafe.Pointer) {
		for _, p := range ps {
			if err := a.UnsafeFree(p); err != nil {
				t.Fatal(err)
			}
		}
	}

	ps := touch()
	free(ps)
	headerOnly, empty := 0, 0
	vec := make([]byte, regionSize/os.Getpagesize())
	for _, p := range ps {
		region := unsafe.Slice((*byte)(unsafe.Add(p, -int(uintptr(p)&(regionSize-1)))), regionSize)
		if err := mincore(region, vec); err != nil {
			t.Fatal(err)
		}
		rest := 0
		for _, v := range vec[1:] {
			rest += int(v & 1)
		}
		switch {
		case vec[0]&1 != 0 && rest == 0:
			headerOnly++
		case vec[0]&1 == 0 && rest == 0:
			empty++
		}
	}
	if headerOnly != 0 || empty < regions-64 {
		t.Errorf("of %d freed regions, %d keep only their header page resident and %d none, want 0 and at least %d: is third_party/modernc-memory.patch applied?", regions, headerOnly, empty, regions-64)
	}

	// Out of the pool again, decommitted ones included: whole and usable.
	free(touch())
	if err := a.Trim(); err != nil {
		t.Fatalf("Trim: %v", err)
	}
}

// mincore reports in vec which of b's pages are resident (bit 0 of each).
func mincore(b, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
