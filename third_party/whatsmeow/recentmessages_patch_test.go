// whatsapp-sessions patch: tests of the recent-message list that grows on use.

package whatsmeow

import (
	"context"
	"fmt"
	"testing"

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
