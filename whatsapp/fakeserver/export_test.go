package fakeserver

// PrekeyEncryptions is how many times the contact encrypted message id to
// user as a prekey message (pkmsg).
func PrekeyEncryptions(s *Server, user, id string) int {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if log := s.received[user]; log != nil && log.byID[id] != nil {
		return log.byID[id].prekeys
	}
	return -1
}

// ContactHasSessions reports whether contact from holds a Signal session
// with each of user's linked devices (and user has at least one).
func ContactHasSessions(s *Server, user, from string) bool {
	devices := s.companionsOf(user)
	p := s.primaryOf(from)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range devices {
		if p.sessions[d.String()] == nil {
			return false
		}
	}
	return len(devices) > 0
}
