package fakeserver_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"google.golang.org/protobuf/proto"
)

// BenchmarkContactSendQueued is the server's own work for a contact's
// message: encryption and queueing, for a device that is offline.
func BenchmarkContactSendQueued(b *testing.B) {
	srv := startServer(b)
	const user = "15550300001"
	tc := connectedSeed(b, srv, user)
	tc.Disconnect()
	waitConnections(b, srv, user, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := srv.ContactSend(ctx, user, fmt.Sprintf("1555777%04d", i%10), "a message of some length, as people write them", ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContactSendDelivered is a contact's message delivered to a
// connected whatsmeow client (in the same process) and acknowledged,
// across clients in parallel: the server's and the clients' work.
func BenchmarkContactSendDelivered(b *testing.B) {
	srv := startServer(b)
	const clients = 20
	users := make([]string, clients)
	for i := range users {
		users[i] = fmt.Sprintf("155503001%02d", i)
		connectedSeed(b, srv, users[i])
	}
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			if _, err := srv.ContactSend(ctx, users[n%clients], "15557779999", "a message of some length, as people write them", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	eventually(b, "every message acknowledged", func() bool {
		st, _ := srv.Stats(ctx)
		return st.Queued == 0
	})
}

// BenchmarkSessionSend is whatsmeow's SendMessage to a contact, through
// the server's decryption by the contact and the phone and its ack.
func BenchmarkSessionSend(b *testing.B) {
	srv := startServer(b)
	tc := connectedSeed(b, srv, "15550300201")
	ctx := context.Background()
	for b.Loop() {
		if _, err := tc.SendMessage(ctx, pn("15557779998"), &waE2E.Message{Conversation: proto.String("a message of some length, as people write them")}); err != nil {
			b.Fatal(err)
		}
	}
}
