// whatsapp-sessions patch: tests of the recent-message list that grows on use,
// keeps its messages marshaled and is searched newest first (no map).

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
	if len(cli.recentMessagesList) != recentMessagesSize {
		t.Errorf("list %d entries, want %d", len(cli.recentMessagesList), recentMessagesSize)
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
	if n := len(cli.recentMessagesList[0].data); n > 64 {
		t.Errorf("the kept message takes %d bytes", n)
	}
	if !cli.getRecentMessage(to, "M2").IsEmpty() || !cli.getRecentMessage(to, "M3").IsEmpty() {
		t.Error("an empty or unknown message is not empty")
	}
}

// A message is found by its recipient and id together, and when one was
// sent twice (a retried send reusing its id), the newest is found, before
// and after the list wraps.
func TestRecentMessagesFindTheNewestForRecipientAndID(t *testing.T) {
	cli := NewClient(&store.Device{}, nil)
	a := types.NewJID("1777", types.DefaultUserServer)
	b := types.NewJID("1888", types.DefaultUserServer)
	ctx := context.Background()
	text := func(s string) *waE2E.Message { return &waE2E.Message{Conversation: proto.String(s)} }
	check := func(when string, to types.JID, id types.MessageID, want string) {
		t.Helper()
		if got := cli.getRecentMessage(to, id).wa.GetConversation(); got != want {
			t.Errorf("%s: %s to %s is %q, want %q", when, id, to.User, got, want)
		}
	}
	for _, m := range []struct {
		to   types.JID
		id   types.MessageID
		text string
	}{{a, "M1", "first to a"}, {b, "M1", "to b"}, {a, "M1", "again to a"}, {a, "M10", "longer id"}} {
		if err := cli.addRecentMessage(ctx, m.to, m.id, text(m.text), nil); err != nil {
			t.Fatal(err)
		}
	}
	check("before the wrap", a, "M1", "again to a")
	check("before the wrap", b, "M1", "to b")
	check("before the wrap", a, "M10", "longer id")
	check("before the wrap", b, "M10", "")
	for i := range recentMessagesSize - 4 { // the list is full, "first to a" next to go
		if err := cli.addRecentMessage(ctx, b, types.MessageID(fmt.Sprintf("F%d", i)), text("filler"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := cli.addRecentMessage(ctx, a, "M1", text("after the wrap"), nil); err != nil {
		t.Fatal(err)
	}
	check("after the wrap", a, "M1", "after the wrap")
	check("after the wrap", b, "M1", "to b")
	if err := cli.addRecentMessage(ctx, b, "M2", text("newest"), nil); err != nil {
		t.Fatal(err)
	}
	check("after the wrap", b, "M1", "") // replaced by the newest
	check("after the wrap", b, "M2", "newest")
	check("after the wrap", a, "M1", "after the wrap")
}
