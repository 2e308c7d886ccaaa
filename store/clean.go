package store

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// cleanFile is the clean marker in a session directory: present only while
// no connection to the store is open and the last one closed cleanly after
// the store had passed a check in this or an earlier process. Open skips
// quick_check on a store that has it.
//
// The marker is removed before a connection opens and written after it
// closed without error, so a process that dies with the store open (kill
// -9, a panic, power loss) leaves no marker and the next Open checks the
// store. The removal is not fsynced on its own: on a journalling file
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
