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

// deviceRef names one device of a phone number: 0 is the phone itself,
// others its linked companions.
type deviceRef struct {
	user   string
	device uint16
}

func (d deviceRef) String() string {
	return d.user + ":" + strconv.Itoa(int(d.device))
}

// stateFile is what the server keeps in Options.StateFile: what WhatsApp
// remembers across its own restarts and a test mode's.
type stateFile struct {
	// Unlinked lists the devices the phone removed, as "user:device";
	// their logins are refused with 401 for good.
	Unlinked []string `json:"unlinked"`
	// Devices are the public keys of the devices paired with this
	// server, so that contacts still reach them after a restart.
	Devices []stateDevice `json:"devices,omitempty"`
}

// stateDevice is a paired companion's public keys in the state file.
type stateDevice struct {
	Device         string `json:"device"` // "user:device"
	RegistrationID uint32 `json:"registrationId"`
	Identity       []byte `json:"identity"`
	SignedPreKeyID uint32 `json:"signedPreKeyId"`
	SignedPreKey   []byte `json:"signedPreKey"`
	Signature      []byte `json:"signature"`
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
		d, err := parseDeviceRef(name)
		if err != nil {
			return fmt.Errorf("fake whatsapp server: state file %s: %w", path, err)
		}
		s.unlinked[d] = struct{}{}
		s.reserveDeviceLocked(d)
	}
	for _, sd := range st.Devices {
		d, err := parseDeviceRef(sd.Device)
		if err == nil && (len(sd.Identity) != 32 || len(sd.SignedPreKey) != 32 || len(sd.Signature) != 64) {
			err = fmt.Errorf("bad keys of device %q", sd.Device)
		}
		if err != nil {
			return fmt.Errorf("fake whatsapp server: state file %s: %w", path, err)
		}
		s.setCompanionLocked(d, &companionKeys{
			regID:    sd.RegistrationID,
			identity: [32]byte(sd.Identity),
			signed:   signedPreKey{id: sd.SignedPreKeyID, pub: [32]byte(sd.SignedPreKey), sig: [64]byte(sd.Signature)},
		})
		s.reserveDeviceLocked(d)
	}
	return nil
}

// parseDeviceRef reads "user:device".
func parseDeviceRef(name string) (deviceRef, error) {
	user, dev, ok := strings.Cut(name, ":")
	n, err := strconv.ParseUint(dev, 10, 16)
	if !ok || user == "" || err != nil {
		return deviceRef{}, fmt.Errorf("bad device %q", name)
	}
	return deviceRef{user: user, device: uint16(n)}, nil
}

// reserveDeviceLocked keeps a later pairing of the same number from
// reusing d's number or device number.
func (s *Server) reserveDeviceLocked(d deviceRef) {
	s.phones[d.user] = struct{}{}
	s.devices[d.user] = max(s.devices[d.user], d.device)
}

// unlinkLocked records that the phone removed d, which contacts no longer
// reach, and writes the state file.
func (s *Server) unlinkLocked(d deviceRef) error {
	if _, ok := s.unlinked[d]; ok {
		return nil
	}
	s.unlinked[d] = struct{}{}
	delete(s.companions[d.user], d.device)
	return s.saveStateLocked()
}

// saveStateLocked writes the state file (if any), replacing it whole, so
// that a crash leaves the old or the new one. Seeded devices are not kept:
// their keys derive from their names.
func (s *Server) saveStateLocked() error {
	if s.statePath == "" {
		return nil
	}
	st := stateFile{Unlinked: make([]string, 0, len(s.unlinked))}
	for d := range s.unlinked {
		st.Unlinked = append(st.Unlinked, d.String())
	}
	slices.Sort(st.Unlinked)
	for user, devs := range s.companions {
		for dev, k := range devs {
			if k.seeded {
				continue
			}
			st.Devices = append(st.Devices, stateDevice{
				Device:         deviceRef{user: user, device: dev}.String(),
				RegistrationID: k.regID,
				Identity:       k.identity[:],
				SignedPreKeyID: k.signed.id,
				SignedPreKey:   k.signed.pub[:],
				Signature:      k.signed.sig[:],
			})
		}
	}
	slices.SortFunc(st.Devices, func(a, b stateDevice) int { return strings.Compare(a.Device, b.Device) })
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
	_, ok := s.unlinked[deviceRef{user: user, device: dev}]
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
