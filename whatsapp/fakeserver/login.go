package fakeserver

import (
	"strconv"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types/events"
)

// login answers a paired client's ClientPayload: <failure> if a
// LoginFailure is set for the user, 401 if the phone unlinked the device,
// <success> otherwise. The server keeps no registry of paired devices, so
// any other username and device number is accepted; this
// is what lets a restarted server (or another process) take over stored
// sessions. It returns false if the connection should end at once.
func (c *conn) login(username uint64, device uint32) bool {
	user := strconv.FormatUint(username, 10)
	dev := uint16(device)

	s := c.srv
	var replaced []*conn
	s.mu.Lock()
	u := s.userLocked(user)
	failure := u.failure
	if _, removed := s.unlinked[deviceRef{user: user, device: dev}]; removed {
		// The phone removed this device: WhatsApp refuses its keys.
		failure = LoginFailure{Reason: int(events.ConnectFailureLoggedOut)}
	}
	if failure.Reason == 0 {
		// One connection per device, as on WhatsApp: a second login with
		// the same keys knocks the first one off.
		for other := range u.live {
			if other.device == dev {
				replaced = append(replaced, other)
				delete(u.live, other)
			}
		}
		c.user, c.device = user, dev
		u.live[c] = struct{}{}
		s.loggedInLocked(c, deviceRef{user: user, device: dev}, len(replaced))
		s.logins++
		// Numbers and device numbers in use are not handed out again by
		// a later pairing on this instance.
		s.phones[user] = struct{}{}
		s.devices[user] = max(s.devices[user], dev)
		if dev != 0 {
			s.knowCompanionLocked(deviceRef{user: user, device: dev})
		}
	}
	s.mu.Unlock()
	for _, other := range replaced {
		other.sendStreamError("", string(StreamReplaced))
	}

	if failure.Reason != 0 {
		c.log.Debug("login refused", "reason", failure.Reason)
		attrs := waBinary.Attrs{"reason": failure.Reason}
		// whatsmeow reads a temporary ban's code and expiry (seconds)
		// from the <failure> attributes.
		if failure.Reason == int(events.ConnectFailureTempBanned) {
			attrs["code"] = failure.BanCode
			attrs["expire"] = int64(failure.Expire / time.Second)
		}
		if err := c.send(waBinary.Node{Tag: "failure", Attrs: attrs}); err != nil {
			return false
		}
		c.closeAfter(closeGrace)
		return true
	}

	// The LID carries the device number, as in pair-success: whatsmeow
	// compares it with the stored LID and rewrites its store on mismatch.
	err := c.send(waBinary.Node{Tag: "success", Attrs: waBinary.Attrs{
		"t":   time.Now().Unix(),
		"lid": deviceLID(user, dev),
	}})
	if err != nil {
		c.log.Debug("success not sent", "err", err)
		return false
	}
	c.log.Debug("logged in", "user", user, "device", dev)
	return true
}
