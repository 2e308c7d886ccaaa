package cluster

import (
	"fmt"
	"testing"
)

func TestPlacement(t *testing.T) {
	peers := []Peer{{"a", "10.0.0.1:7000"}, {"b", "10.0.0.2:7000"}, {"c", "10.0.0.3:7000"}}
	p := newPlacer(peers)
	counts := map[string]int{}
	for i := range 300 {
		id := fmt.Sprintf("s%d", i)
		r, ok := p.rendezvous(id)
		if !ok {
			t.Fatalf("%s: no rendezvous choice", id)
		}
		counts[r.Name]++
		// The same choice from a placer built in another order (another node).
		if r2, _ := newPlacer([]Peer{peers[2], peers[0], peers[1]}).rendezvous(id); r2 != r {
			t.Fatalf("%s: %v on one node, %v on another", id, r, r2)
		}
		if got, _ := p.place(id, ""); got != r {
			t.Errorf("%s without a holder: %v, want the rendezvous choice %v", id, got, r)
		}
		if got, _ := p.place(id, "dead"); got != r {
			t.Errorf("%s held by a node that is not live: %v, want %v", id, got, r)
		}
		holder := peers[(i+1)%3]
		if got, _ := p.place(id, holder.Name); got != holder {
			t.Errorf("%s held by %s: placed on %v", id, holder.Name, got)
		}
	}
	for _, peer := range peers {
		if counts[peer.Name] < 60 {
			t.Errorf("rendezvous spread %v", counts)
		}
	}
	// Removing a node moves only its sessions.
	two := newPlacer(peers[:2])
	for i := range 300 {
		id := fmt.Sprintf("s%d", i)
		before, _ := p.rendezvous(id)
		after, _ := two.rendezvous(id)
		if before.Name != "c" && before != after {
			t.Errorf("%s moved from %s to %s when c left", id, before.Name, after.Name)
		}
	}
	if _, ok := newPlacer(nil).place("x", ""); ok {
		t.Error("placed with no live node")
	}
}
