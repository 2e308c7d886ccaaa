// Copyright 2026 The Memory Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

//go:build unix

package memory // import "modernc.org/memory"

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// canDecommit gates the decommit policy: pooled regions past the hot window
// hand their pages back to the OS.
const canDecommit = true

// madviseAdvice is the advice passed for a region falling out of the hot
// window.
//
// MADV_DONTNEED rather than MADV_FREE: MADV_FREE reclaims lazily, so the
// resident set does not actually drop until the machine is under pressure
// - measured, a 2 GiB pool still read as 2 GiB of RSS. That is the same
// reason the Go runtime defaults to MADV_DONTNEED.
const madviseAdvice = unix.MADV_DONTNEED

// decommit asks the kernel to reclaim the physical pages backing the empty
// region at p without unmapping it. The mapping stays, and with it the address,
// the VMA and the absence of a future mmap - that is the whole point: retention
// keeps its syscall and map-count savings while handing the resident set back.
//
// MADV_DONTNEED does not change vm_flags, so this does not split the VMA.
//
// whatsapp-sessions patch: the whole region is decommitted, its first OS page
// (the page header) too. Upstream leaves that page alone, so that nothing has
// to be reconstructed on reuse; but then every region in the pool keeps 4 KiB
// resident, a sixteenth of the pool (up to ~27 MB after a burst that had 440 MB
// of regions live). The header is rebuilt where a region leaves the pool (mmap
// sets its size from the pool's key), and nothing reads the header of a region
// while it is pooled (Trim and Close unmap pooled regions by that key).
func decommit(p uintptr, size int) {
	if size <= osPageSize {
		return
	}

	unix.Madvise((*rawmem)(unsafe.Pointer(p))[:size:size], madviseAdvice)
}

// recommit is what makes a region from the pool's decommitted prefix usable
// again before it is handed out. On unix there is nothing to do: pages
// discarded by MADV_DONTNEED soft-fault back zero-filled on first touch.
func recommit(uintptr, int) error { return nil }
