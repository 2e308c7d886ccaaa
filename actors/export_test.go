package actors

// RefusedMoves is how many state moves the manager's sessions had refused:
// each is a bug, so tests expect none.
func (m *Manager) RefusedMoves() int64 { return m.deps.refused.Load() }
