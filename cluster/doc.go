// Package cluster runs several whatsapp-sessions nodes as one service on
// protoactor-go's cluster: membership from protoactor's providers (etcd, or
// automanaged over static peers), mutual TLS between the nodes, and
// placement of our own, plugged in through protoactor's IdentityLookup
// extension point instead of disthash: session X goes to the node holding
// its lease when that node is a live member and eligible, else to the
// rendezvous choice among the live eligible nodes. disthash would move every
// grain at once on a topology change and fences nothing; the lease (package
// lease) is the fence, this package only routes and balances.
//
// A grain of kind "session" (identity: the senderId) is a thin router: it
// forwards each request to its node's Local service (the actors.Manager)
// and answers. A node actor on every member activates the grains placed
// there and answers for the node as a whole (its fleet, adoptions). The
// Service here implements sessions.Service and sessions.Messenger for the
// HTTP API on any node. Each node sweeps every LEASE_TTL/3 and on each
// topology change: it adopts the sessions placed on it that no live
// eligible node hosts, and hands over, one paced batch at a time, the
// sessions it hosts whose rendezvous choice is another eligible node.
//
// The package depends on small interfaces (Leases, Local, Registry) that
// the lease keeper, the manager and the Postgres registry satisfy.
package cluster
