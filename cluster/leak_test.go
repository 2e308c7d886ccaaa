package cluster_test

import "go.uber.org/goleak"

// leakIgnores are goroutines the pinned protoactor-go leaves behind after
// its members shut down, none of them started by this package: each actor
// system's throttles (they never stop), and the gRPC connections its
// remote's endpoint writers dialled or still redial (a shut-down remote does not close the
// ones to members that are gone; they keep redialling in the background).
// This package's own goroutines (the sweep, the etcd provider's keep-alive
// and watch, the requests) and its etcd client are still checked.
func leakIgnores() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreTopFunction("google.golang.org/grpc.(*addrConn).resetTransport"),
		// An endpoint writer retries a failed dial (a peer that refused the
		// handshake) a few times, seconds apart, in its actor.
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/remote.(*endpointWriter).initialize"),
		// The automanaged provider's monitor notices its shutdown after its
		// current round (a sleep of its refresh period, or peers' health
		// requests of up to 2 s); nothing can wait for it.
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged.(*AutoManagedProvider).monitorMemberStatusChanges.func1"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	}
}
