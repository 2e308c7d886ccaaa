package fakeserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// unlinkedDevice names a companion device the phone removed.
type unlinkedDevice struct {
	user   string
	device uint16
}

func (d unlinkedDevice) String() string {
	return d.user + ":" + strconv.Itoa(int(d.device))
}

// stateFile is what the server keeps in Options.StateFile: what WhatsApp
// remembers across its own restarts and a test mode's.
type stateFile struct {
	// Unlinked lists the devices the phone removed, as "user:device";
	// their logins are refused with 401 for good.
	Unlinked []string `json:"unlinked"`
}

// loadState reads path into the server's memory; a missing file is an
// empty state. It runs before the server serves.
func (s *Server) loadState(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fake whatsapp server: state file: %w", err)
	}
	defer f.Close()
	var st stateFile
	if err := json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(&st); err != nil {
		return fmt.Errorf("fake whatsapp server: state file %s: %w", path, err)
	}
	for _, name := range st.Unlinked {
		user, dev, ok := strings.Cut(name, ":")
		n, err := strconv.ParseUint(dev, 10, 16)
		if !ok || user == "" || err != nil {
			return fmt.Errorf("fake whatsapp server: state file %s: bad device %q", path, name)
		}
		d := unlinkedDevice{user: user, device: uint16(n)}
		s.unlinked[d] = struct{}{}
		// A later pairing of the same number must not reuse the number
		// of a removed device.
		s.phones[user] = struct{}{}
		s.devices[user] = max(s.devices[user], d.device)
	}
	return nil
}

// unlinkLocked records that the phone removed d and writes the state file,
// replacing it whole, so that a crash leaves the old or the new one.
func (s *Server) unlinkLocked(d unlinkedDevice) error {
	if _, ok := s.unlinked[d]; ok {
		return nil
	}
	s.unlinked[d] = struct{}{}
	if s.statePath == "" {
		return nil
	}
	st := stateFile{Unlinked: make([]string, 0, len(s.unlinked))}
	for d := range s.unlinked {
		st.Unlinked = append(st.Unlinked, d.String())
	}
	slices.Sort(st.Unlinked)
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.statePath, data); err != nil {
		return fmt.Errorf("fake whatsapp server: write state file: %w", err)
	}
	return nil
}

// isUnlinked reports whether the phone removed device dev of user.
func (s *Server) isUnlinked(user string, dev uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.unlinked[unlinkedDevice{user: user, device: dev}]
	return ok
}

// writeFileAtomic writes data to a new file beside path (created
// exclusively, mode 0600), syncs it and renames it over path.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}
