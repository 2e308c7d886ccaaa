package cluster

import (
	"context"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Peer is a node of the lease table (ws_nodes): its NODE_NAME and the
// cluster address it advertises, which is its member address here.
type Peer struct {
	Name    string
	Address string
}

// Leases is what placement needs of the lease keeper (package lease).
type Leases interface {
	// Holders maps each of ids whose lease is held to its owner's node
	// name; ids without a live lease are absent.
	Holders(ctx context.Context, ids []string) (map[string]string, error)
	// Eligible lists the nodes with a fresh heartbeat that are not
	// leaving.
	Eligible(ctx context.Context) ([]Peer, error)
	// SetLeaving marks this node leaving: no longer eligible, so that
	// placement and the other nodes' sweeps stop choosing it.
	SetLeaving(ctx context.Context) error
}

// Registry lists the sessions of the shared store (ws_sessions).
type Registry interface {
	// Active lists every stored session that is not stopped: those some
	// node should run.
	Active(ctx context.Context) ([]string, error)
}

// Local is this node's own sessions service (the actors.Manager): the
// sessions it runs, plus the moves between nodes.
type Local interface {
	sessions.Service
	sessions.Messenger
	// Adopt starts ids here (each connects once it holds its lease),
	// paced like a restore; ids already running are left alone.
	Adopt(ctx context.Context, ids []string) error
	// Release hands ids over: each disconnects, closes its store and
	// releases its lease, and is no longer hosted here when it returns.
	Release(ctx context.Context, ids []string) error
	// Hosted lists the sessions running here.
	Hosted(ctx context.Context) ([]string, error)
}
