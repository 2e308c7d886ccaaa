package fakeserver

import (
	"context"
	"sort"
	"time"
)

// DeviceConnections is the server's record of one device's logged-in
// connections since it started: what a multi-node test reads to prove that
// a device was never connected twice at once.
type DeviceConnections struct {
	// Device is "user:device", the device's JID without the server.
	Device string `json:"device"`
	// Open is the number of logged-in connections whose socket is open now.
	// A connection replaced by a newer login counts until its socket
	// closes.
	Open int `json:"open"`
	// MaxConcurrent is the most logged-in connections that were ever open
	// at once.
	MaxConcurrent int `json:"maxConcurrent"`
	// Logins counts successful logins.
	Logins int `json:"logins"`
	// Replaced counts the streams a later login of the same device
	// replaced (the older one got <conflict type="replaced"/>, as on
	// WhatsApp). A stream error sent through SendStreamError is not
	// counted.
	Replaced int `json:"replaced"`
	// LastLogin is when the latest login succeeded, and LastClose when
	// the latest logged-in connection's socket ended (zero: none yet):
	// after a move between nodes, LastLogin - LastClose is how long the
	// device was down.
	LastLogin time.Time `json:"lastLogin,omitzero"`
	LastClose time.Time `json:"lastClose,omitzero"`
}

// loggedInLocked records c's login as device d, which replaced replaced
// older connections; s.mu is held.
func (s *Server) loggedInLocked(c *conn, d deviceRef, replaced int) {
	r := s.record[d]
	if r == nil {
		r = &DeviceConnections{Device: d.String()}
		s.record[d] = r
	}
	c.recorded = true
	r.Open++
	r.MaxConcurrent = max(r.MaxConcurrent, r.Open)
	r.Logins++
	r.Replaced += replaced
	r.LastLogin = time.Now()
}

// closedLocked records that c's socket has ended; s.mu is held.
func (s *Server) closedLocked(c *conn) {
	if !c.recorded {
		return
	}
	c.recorded = false
	if r := s.record[deviceRef{user: c.user, device: c.device}]; r != nil {
		r.Open--
		r.LastClose = time.Now()
	}
}

// ConnectionRecord implements Control.
func (s *Server) ConnectionRecord(context.Context) ([]DeviceConnections, error) {
	s.mu.Lock()
	out := make([]DeviceConnections, 0, len(s.record))
	for _, r := range s.record {
		out = append(out, *r)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}
