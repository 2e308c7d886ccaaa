// whatsapp-sessions patch: tests of the recent-message list that grows on use
// and keeps its messages marshaled.

package whatsmeow

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
)

// A client keeps the last recentMessagesSize messages it sent, and its
// list grows with the messages sent instead of being allocated whole.
func TestRecentMessagesGrowOnUseAndKeepTheLast(t *testing.T) {
	cli := NewClient(&store.Device{}, nil)
	to := types.NewJID("1777", types.DefaultUserServer)
	ctx := context.Background()
	id := func(i int) types.MessageID { return types.MessageID(fmt.Sprintf("M%d", i)) }
	msg := &waE2E.Message{}
	if err := cli.addRecentMessage(ctx, to, id(0), msg, nil); err != nil {
		t.Fatal(err)
	}
	if c := cap(cli.recentMessagesList); c > 4 {
		t.Errorf("after one message the list holds room for %d", c)
	}
	const n = recentMessagesSize + 44
	for i := 1; i < n; i++ {
		if err := cli.addRecentMessage(ctx, to, id(i), msg, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(cli.recentMessagesList) != recentMessagesSize || len(cli.recentMessagesMap) != recentMessagesSize {
		t.Errorf("list %d, map %d entries, want %d each", len(cli.recentMessagesList), len(cli.recentMessagesMap), recentMessagesSize)
	}
	for i := range n {
		got := cli.getRecentMessage(to, id(i)).wa != nil
		if want := i >= n-recentMessagesSize; got != want {
			t.Errorf("message %d kept: %v, want %v", i, got, want)
		}
	}
}

// A kept message is the message sent, marshaled: it comes back equal (a
// copy), and a short text costs its bytes, not a *waE2E.Message.
func TestRecentMessagesAreKeptMarshaled(t *testing.T) {
	cli := NewClient(&store.Device{}, nil)
	to := types.NewJID("1777", types.DefaultUserServer)
	ctx := context.Background()
	msg := &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text:        proto.String("hello"),
		ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String("3EB0A1"), Participant: proto.String("1888@s.whatsapp.net")},
	}}
	if err := cli.addRecentMessage(ctx, to, "M1", msg, nil); err != nil {
		t.Fatal(err)
	}
	if err := cli.addRecentMessage(ctx, to, "M2", nil, nil); err != nil {
		t.Fatal(err)
	}
	got := cli.getRecentMessage(to, "M1")
	if !proto.Equal(got.wa, msg) || got.fb != nil {
		t.Errorf("kept message %v, want %v", got.wa, msg)
	}
	if got.wa == msg {
		t.Error("the kept message is the sender's pointer, not a copy")
	}
	if n := len(cli.recentMessagesMap[recentMessageKey{to, "M1"}].buf); n > 64 {
		t.Errorf("the kept message takes %d bytes", n)
	}
	if !cli.getRecentMessage(to, "M2").IsEmpty() || !cli.getRecentMessage(to, "M3").IsEmpty() {
		t.Error("an empty or unknown message is not empty")
	}
}
