// Package store owns the layout of SESSIONS_DIR: one directory per session
// (session-{senderId}) holding one whatsmeow SQLite store, the lock that
// keeps a second process away, the API key file, and the marker that
// remembers an operator's stop. It validates every senderId before any path
// is built from it.
package store

import (
	"errors"
	"fmt"
	"regexp"
)

// Errors callers map to statuses and session states.
var (
	// ErrInvalidID means a senderId does not match IDPattern.
	ErrInvalidID = errors.New("invalid senderId: use 1 to 64 letters, digits, '_' or '-'")
	// ErrNotFound means no directory exists for the session.
	ErrNotFound = errors.New("session not found")
	// ErrNoStore means the session's directory holds no store: its
	// credentials are gone, and it must be paired again.
	ErrNoStore = errors.New("session directory holds no whatsapp.db")
	// ErrCorrupt means the session's database cannot be read as a store.
	ErrCorrupt = errors.New("session store is corrupt")
	// ErrUnavailable means the store exists but cannot be opened or written
	// (permissions, a symlink, a full disk, an I/O error).
	ErrUnavailable = errors.New("session store is unavailable")
	// ErrLocked means another process owns the sessions directory.
	ErrLocked = errors.New("sessions directory is in use by another process")
	// ErrDirReplaced means the sessions directory this process locked was
	// removed or replaced while it ran (its lock file is gone or another
	// file): another process may own the new one, so this one must stop.
	ErrDirReplaced = errors.New("sessions directory was removed or replaced while the service ran")
)

// IDPattern is what a senderId must match.
var IDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateID returns ErrInvalidID unless id is a well-formed senderId.
func ValidateID(id string) error {
	if !IDPattern.MatchString(id) {
		return fmt.Errorf("%w (got %d characters)", ErrInvalidID, len(id))
	}
	return nil
}
