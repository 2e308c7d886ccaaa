package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"go.mau.fi/whatsmeow/store/sqlstore/upgrades"
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
//
// The marker names the whatsmeow schema version the store was at when it
// closed (cleanContent). Open skips whatsmeow's schema check and upgrade
// (three statements, ~4 % of a restore's CPU) only when that is the
// version this build knows: a marker written by a build of another
// whatsmeow, or an empty one (written before markers named a version),
// still gets the quick_check skip but not this one.
const cleanFile = "clean-close"

// cleanContent is what a clean marker written by this build holds.
var cleanContent = fmt.Sprintf("whatsmeow schema %d\n", len(upgrades.Table))

// CleanMarkerContent is what this build writes into a store's clean
// marker: the whatsmeow schema version its stores are at. A program that
// keeps closed stores for later (the bench's template) can tell from it
// whether another build closed them.
func CleanMarkerContent() string { return cleanContent }

// cleanMarker is what Open finds of a store's clean marker.
type cleanMarker struct {
	// present: the store was closed cleanly after it passed a check.
	present bool
	// currentSchema: and its schema was then the one this build's
	// whatsmeow upgrades stores to.
	currentSchema bool
}

// readCleanMarker reads dir's clean marker. Only a regular file counts:
// O_NOFOLLOW refuses a symlink, and anything but a regular file is no
// marker either.
func readCleanMarker(dir string) cleanMarker {
	f, err := os.OpenFile(dir+string(os.PathSeparator)+cleanFile, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return cleanMarker{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return cleanMarker{}
	}
	buf := make([]byte, len(cleanContent)+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return cleanMarker{present: true}
	}
	return cleanMarker{present: true, currentSchema: string(buf[:n]) == cleanContent}
}

// removeCleanMarker removes the marker at path if there is one; unlink
// never follows a symlink.
func removeCleanMarker(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeCleanMarker creates the marker at path, holding cleanContent: the
// caller closed a store that is at this build's schema. O_EXCL|O_NOFOLLOW:
// never through a planted symlink; one already there is left as it is.
// The content is not synced: a power loss may keep the marker's name but
// not its content, which costs the next Open only the schema check's skip.
func writeCleanMarker(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(cleanContent)
	return errors.Join(err, f.Close())
}
