package store

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// cleanFile is the clean marker in a session directory: present only while
// the store is not open and was last closed cleanly (Session.Close) after
// it had passed a check in this or an earlier process. Open skips
// quick_check on a store that has it.
//
// The marker is removed before any connection to the store opens and
// written by Session.Close once the database closed without error, so a
// process that dies with the store open (kill -9, a panic, power loss)
// leaves no marker and the next Open checks the store. An idle connection
// closing does not write it: creating a file costs ~0.2 ms of kernel time
// here, and a session's connection comes and goes many times while it
// runs. The removal is not fsynced on its own: on a journalling file
// system (ext4, xfs) the first durable write to the store commits it in
// the same journal transaction, and until such a write the store is the
// one that was closed cleanly.
const cleanFile = "clean-close"

// hasCleanMarker reports whether dir holds a clean marker that is a regular
// file (a symlink or anything else does not count).
func hasCleanMarker(dir string) bool {
	fi, err := os.Lstat(dir + string(os.PathSeparator) + cleanFile)
	return err == nil && fi.Mode().IsRegular()
}

// removeCleanMarker removes the marker at path if there is one; unlink
// never follows a symlink.
func removeCleanMarker(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeCleanMarker creates the (empty) marker at path. O_EXCL|O_NOFOLLOW:
// never through a planted symlink; one already there is left as it is.
func writeCleanMarker(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}
