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
