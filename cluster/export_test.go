package cluster

// RendezvousOf is session id's rendezvous choice among peers, as the
// placement computes it (for tests that need a session placed somewhere).
func RendezvousOf(id string, peers ...Peer) string {
	peer, _ := newPlacer(peers).rendezvous(id)
	return peer.Name
}
