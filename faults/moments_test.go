package faults_test

import (
	"slices"
	"sync"
	"time"
)

// moments are the times at which goroutines saw something happen (a
// dial, a login), safe for concurrent use.
type moments struct {
	mu    sync.Mutex
	times []time.Time
}

// add records one moment.
func (m *moments) add(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.times = append(m.times, at)
}

// count is how many moments were recorded so far.
func (m *moments) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.times)
}

// since returns the moments recorded from index i on, sorted.
func (m *moments) since(i int) []time.Time {
	m.mu.Lock()
	out := slices.Clone(m.times[i:])
	m.mu.Unlock()
	slices.SortFunc(out, time.Time.Compare)
	return out
}
