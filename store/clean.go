package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
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
// The marker holds two lines (markerContent): the whatsmeow schema version
// the store was at, and the size and modification time (ns) of its
// database file as the clean close left it. It vouches for that file only:
// a store replaced or written behind the service's back since (a backup
// copied into place, another program) has another size or time, and Open
// then checks it as if there were no marker. Open also skips whatsmeow's
// schema check and upgrade (three statements, ~4 % of a restore's CPU)
// when the version is this build's. An empty marker, written before
// markers held anything, still skips quick_check alone, as it did then.
const cleanFile = "clean-close"

// cleanSchema is the first line of the markers this build writes.
var cleanSchema = fmt.Sprintf("whatsmeow schema %d", len(upgrades.Table))

// CleanMarkerSchema is the first line of the clean markers this build
// writes: the whatsmeow schema version its stores are at. A program that
// keeps closed stores for later (the bench's template) can tell from it
// whether another build closed them.
func CleanMarkerSchema() string { return cleanSchema }

// markerContent is what the marker of a store whose database file is db
// holds when this build closes it cleanly.
func markerContent(db fs.FileInfo) string {
	return cleanSchema + "\n" + markerStoreLine(db)
}

func markerStoreLine(db fs.FileInfo) string {
	return fmt.Sprintf("store %d %d\n", db.Size(), db.ModTime().UnixNano())
}

// maxMarkerSize bounds what is read of a marker; the ones written here are
// well under it.
const maxMarkerSize = 256

// cleanMarker is what Open finds of a store's clean marker.
type cleanMarker struct {
	// present: the store was closed cleanly after it passed a check, and
	// has not changed since.
	present bool
	// currentSchema: and its schema was then the one this build's
	// whatsmeow upgrades stores to.
	currentSchema bool
}

// readCleanMarker reads dir's clean marker for the database file db (nil
// when there is none: a marker says nothing of a store to be created).
// Only a regular file counts: O_NOFOLLOW refuses a symlink, and anything
// but a regular file is no marker either; nor is one that cannot be read.
func readCleanMarker(dir string, db fs.FileInfo) cleanMarker {
	if db == nil {
		return cleanMarker{}
	}
	f, err := os.OpenFile(dir+string(os.PathSeparator)+cleanFile, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return cleanMarker{}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return cleanMarker{}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxMarkerSize))
	if err != nil {
		return cleanMarker{}
	}
	if len(b) == 0 {
		return cleanMarker{present: true}
	}
	schema, store, _ := strings.Cut(string(b), "\n")
	if store != markerStoreLine(db) {
		return cleanMarker{}
	}
	return cleanMarker{present: true, currentSchema: schema == cleanSchema}
}

// removeCleanMarker removes the marker at path if there is one; unlink
// never follows a symlink.
func removeCleanMarker(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeCleanMarker creates the marker at path for the database file db,
// as the caller's clean close left it, at this build's schema.
// O_EXCL|O_NOFOLLOW: never through a planted symlink; one already there is
// left as it is. The content is not synced: a power loss may keep the
// marker's name but not its content, and a marker cut short vouches for
// nothing.
func writeCleanMarker(path string, db fs.FileInfo) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(markerContent(db))
	return errors.Join(err, f.Close())
}
