package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// db is the in-memory stand-in for the Postgres side all nodes share:
// the sessions, the nodes and the leases.
type db struct {
	mu      sync.Mutex
	active  []string
	holders map[string]string // session -> node name
	nodes   map[string]*nodeRow
	// hosts counts, per session, the nodes hosting it now; maxHosts is
	// the most there ever were at once.
	hosts    map[string]int
	maxHosts int
	// releases records each Release call: node, size, start, and how
	// many Release calls of that node were running at once.
	releases    []releaseCall
	inflight    map[string]int
	maxInflight int
}

type nodeRow struct {
	address string
	alive   bool
	leaving bool
}

type releaseCall struct {
	node string
	n    int
	at   time.Time
}

func newDB(ids ...string) *db {
	return &db{active: ids, holders: map[string]string{}, nodes: map[string]*nodeRow{},
		hosts: map[string]int{}, inflight: map[string]int{}}
}

// join registers node name at address, alive and eligible.
func (d *db) join(name, address string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nodes[name] = &nodeRow{address: address, alive: true}
}

// die is a node's heartbeat going stale: not eligible, its leases as good
// as expired.
func (d *db) die(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nodes[name].alive = false
}

func (d *db) holder(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.holders[id]
}

// spread counts the held sessions per node.
func (d *db) spread() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.spreadLocked()
}

func (d *db) spreadLocked() map[string]int {
	out := map[string]int{}
	for _, n := range d.holders {
		out[n]++
	}
	return out
}

// leases is one node's view of db, as lease.Keeper would be.
type leases struct {
	d    *db
	name string
}

func (l leases) Holders(_ context.Context, ids []string) (map[string]string, error) {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	out := map[string]string{}
	for _, id := range ids {
		if h, ok := l.d.holders[id]; ok && l.d.nodes[h].alive {
			out[id] = h
		}
	}
	return out, nil
}

func (l leases) Eligible(context.Context) ([]cluster.Peer, error) {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	var out []cluster.Peer
	for name, n := range l.d.nodes {
		if n.alive && !n.leaving {
			out = append(out, cluster.Peer{Name: name, Address: n.address})
		}
	}
	return out, nil
}

func (l leases) SetLeaving(context.Context) error {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	l.d.nodes[l.name].leaving = true
	return nil
}

func (d *db) Active(context.Context) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.active), nil
}

// local is one node's sessions service: a session is hosted here once
// it holds its lease, which it takes only when free or expired.
type local struct {
	d      *db
	name   string
	fleets atomic.Int64 // Fleet calls
	mu     sync.Mutex
	hosted map[string]bool
	// waiting are the hosted sessions waiting for a lease another node
	// holds (not connected); an Adopt of one takes the lease if free, as
	// its next retry would.
	waiting map[string]bool
}

var _ cluster.Local = (*local)(nil)

func newLocal(d *db, name string) *local {
	return &local{d: d, name: name, hosted: map[string]bool{}, waiting: map[string]bool{}}
}

// wait hosts id here waiting for its lease, which another node holds.
func (l *local) wait(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hosted[id], l.waiting[id] = true, true
}

// isWaiting says whether id is hosted here waiting for its lease.
func (l *local) isWaiting(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting[id]
}

// isHosted says whether id is hosted here.
func (l *local) isHosted(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosted[id]
}

func (l *local) Adopt(_ context.Context, ids []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	for _, id := range ids {
		if l.hosted[id] && !l.waiting[id] {
			continue
		}
		if h, ok := l.d.holders[id]; ok && h != l.name && l.d.nodes[h].alive {
			continue // owned elsewhere: a real session would wait
		}
		if h, ok := l.d.holders[id]; ok && h != l.name {
			l.d.hosts[id]-- // the dead holder's connection is gone
		}
		l.d.holders[id] = l.name
		l.hosted[id] = true
		delete(l.waiting, id)
		l.d.hosts[id]++
		l.d.maxHosts = max(l.d.maxHosts, l.d.hosts[id])
	}
	return nil
}

func (l *local) Release(_ context.Context, ids []string) error {
	l.d.mu.Lock()
	l.d.inflight[l.name]++
	l.d.maxInflight = max(l.d.maxInflight, l.d.inflight[l.name])
	l.d.releases = append(l.d.releases, releaseCall{node: l.name, n: len(ids), at: time.Now()})
	l.d.mu.Unlock()
	time.Sleep(10 * time.Millisecond) // a disconnect takes a moment
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	for _, id := range ids {
		if l.waiting[id] {
			delete(l.hosted, id)
			delete(l.waiting, id)
			continue // never connected
		}
		if l.hosted[id] {
			delete(l.hosted, id)
			l.d.hosts[id]--
			if l.d.holders[id] == l.name {
				delete(l.d.holders, id)
			}
		}
	}
	l.d.inflight[l.name]--
	return nil
}

func (l *local) Hosted(context.Context) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.hosted {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// crash forgets everything hosted here without releasing (kill -9).
func (l *local) crash() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hosted, l.waiting = map[string]bool{}, map[string]bool{}
}

// Status says which node answered in PushName.
func (l *local) Status(_ context.Context, id string) (sessions.Status, error) {
	if id == "wrong-state" {
		return sessions.Status{}, sessions.WrongState(sessions.StatePairing, "session %s is pairing", id)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.hosted[id] {
		return sessions.Status{}, sessions.Errorf(sessions.ErrNotFound, "session %s is not on node %s", id, l.name)
	}
	name := l.name
	return sessions.Status{SenderID: id, State: sessions.StateConnected, Connected: true, PushName: &name}, nil
}

func (l *local) Fleet(context.Context) (sessions.Fleet, error) {
	l.fleets.Add(1)
	hosted, _ := l.Hosted(context.Background())
	start := time.Now().Add(-time.Minute)
	f := sessions.Fleet{Counts: map[sessions.State]int{sessions.StateConnected: len(hosted)},
		Restore: sessions.RestoreProgress{Started: &start, Finished: &start, Found: len(hosted), Restored: len(hosted)}}
	for _, id := range hosted {
		f.Sessions = append(f.Sessions, sessions.Status{SenderID: id, State: sessions.StateConnected})
	}
	return f, nil
}

func (l *local) Restore(ctx context.Context, ids []string) error { return l.Adopt(ctx, ids) }

func (l *local) Create(ctx context.Context, id string) (sessions.CreateResult, error) {
	l.d.mu.Lock()
	if !slices.Contains(l.d.active, id) {
		l.d.active = append(l.d.active, id)
	}
	l.d.mu.Unlock()
	if err := l.Adopt(ctx, []string{id}); err != nil {
		return sessions.CreateResult{}, err
	}
	st, err := l.Status(ctx, id)
	return sessions.CreateResult{Status: st, Created: true}, err
}

func (l *local) Stop(ctx context.Context, id string) (sessions.Status, error) {
	return l.Status(ctx, id)
}
func (l *local) Delete(context.Context, string) error { return nil }
func (l *local) Logout(ctx context.Context, id string) (sessions.Status, error) {
	return l.Status(ctx, id)
}
func (l *local) QR(context.Context, string) (sessions.QR, error) {
	return sessions.QR{}, sessions.WrongState(sessions.StateConnected, "connected: no QR")
}
func (l *local) PairPhone(context.Context, string, string) (string, error) { return "", nil }
func (l *local) Ping(context.Context) error                                { return nil }

// Send answers with the node and the Idempotency-Key it got.
func (l *local) Send(_ context.Context, id string, req sessions.SendRequest) (sessions.SentMessage, error) {
	return sessions.SentMessage{ID: fmt.Sprintf("%s/%s/%s", l.name, req.IdempotencyKey, req.Text)}, nil
}

func (l *local) MarkRead(_ context.Context, _ string, req sessions.ReadRequest) error {
	if req.ID == "" {
		return sessions.Errorf(sessions.ErrInvalid, "no message id")
	}
	return nil
}
