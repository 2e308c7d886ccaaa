package fakeserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/whatsmeow/appstate"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waServerSync"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"
	"google.golang.org/protobuf/proto"
)

// After linking a companion, a real phone sends it, end-to-end encrypted,
// the keys of the account's app state, and the companion then fetches the
// app state from the server. The push name (Store.PushName) lives there, in
// the critical_block collection, and that is the only way whatsmeow learns
// it. The fake phone does the same, minimally:
//
//   - when the new device first logs in and goes active, the phone opens a
//     Signal session to it (from the prekey bundle the client registered
//     with) and sends an AppStateSyncKeyShare protocol message;
//   - the client then asks for every app state collection; the server
//     answers critical_block with one patch setting the push name,
//     encrypted and MACed with the shared key, and the others empty.
//
// History sync, contacts and the rest of the app state are not emulated.

// linkedDevice is a companion the phone linked and still owes the initial
// sync.
type linkedDevice struct {
	phone    string
	reg      registration
	pushName string
}

// appState is the app state a phone shared with one device: the patch
// (version 1) of each collection that has one.
type appState struct {
	patches map[appstate.WAPatchName][]byte
}

// sendInitialSync sends the phone's app state key share to a freshly
// paired device once it went active. It runs on the connection's goroutine.
func (c *conn) sendInitialSync() {
	s := c.srv
	jid := deviceJID(c.user, c.device)
	s.mu.Lock()
	ld := s.linked[jid]
	delete(s.linked, jid)
	s.mu.Unlock()
	if ld == nil {
		return
	}
	msg, state, err := ld.initialSync(s.primaryOf(c.user), jid)
	if err == nil {
		err = c.send(*msg)
	}
	if err != nil {
		c.log.Warn("initial sync not sent", "err", err)
		s.mu.Lock()
		s.linked[jid] = ld // try again on the next login
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.appState[jid] = state
	s.mu.Unlock()
}

// initialSync builds the key share message for device jid and the app
// state it unlocks.
func (ld *linkedDevice) initialSync(phone *primary, jid types.JID) (*waBinary.Node, *appState, error) {
	ctx := context.Background()
	keyID := make([]byte, 6)
	keyData := make([]byte, 32)
	_, _ = rand.Read(keyID)
	_, _ = rand.Read(keyData)
	key := &store.AppStateSyncKey{Data: keyData, Timestamp: time.Now().UnixMilli()}
	patch, err := pushNamePatch(ctx, keyID, key, ld.pushName)
	if err != nil {
		return nil, nil, err
	}

	plaintext, err := proto.Marshal(&waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
		Type: waE2E.ProtocolMessage_APP_STATE_SYNC_KEY_SHARE.Enum(),
		AppStateSyncKeyShare: &waE2E.AppStateSyncKeyShare{Keys: []*waE2E.AppStateSyncKey{{
			KeyID: &waE2E.AppStateSyncKeyId{KeyID: keyID},
			KeyData: &waE2E.AppStateSyncKeyData{
				KeyData: keyData,
				Fingerprint: &waE2E.AppStateSyncKeyFingerprint{
					RawID:         proto.Uint32(randomUint32()),
					CurrentIndex:  proto.Uint32(uint32(jid.Device)),
					DeviceIndexes: []uint32{0, uint32(jid.Device)},
				},
				Timestamp: proto.Int64(key.Timestamp),
			},
		}}},
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key share: %w", err)
	}
	// The phone's session with the device stays: the device answers on
	// it when it sends the phone the copies of its messages.
	to := deviceRef{user: ld.phone, device: jid.Device}
	phone.forget(to) // a session with an earlier device of that number
	ciphertext, prekeyMsg, err := phone.encrypt(ctx, to, func() (*prekey.Bundle, error) {
		return ld.reg.companionKeys().bundle(jid.Device, nil), nil
	}, padMessage(plaintext))
	if err != nil {
		return nil, nil, err
	}
	if !prekeyMsg {
		return nil, nil, fmt.Errorf("the first message to a new device is not a prekey message")
	}
	msg := &waBinary.Node{
		Tag: "message",
		Attrs: waBinary.Attrs{
			"from":     types.JID{User: ld.phone, Server: types.DefaultUserServer},
			"id":       newMessageID(),
			"t":        time.Now().Unix(),
			"type":     "text",
			"category": "peer",
		},
		Content: []waBinary.Node{{
			Tag:     "enc",
			Attrs:   waBinary.Attrs{"v": "2", "type": "pkmsg"},
			Content: ciphertext,
		}},
	}
	return msg, &appState{patches: map[appstate.WAPatchName][]byte{appstate.WAPatchCriticalBlock: patch}}, nil
}

// pushNamePatch is the critical_block patch (version 1, from an empty
// state) that sets the push name, encoded with whatsmeow's own app state
// encoder.
func pushNamePatch(ctx context.Context, keyID []byte, key *store.AppStateSyncKey, pushName string) ([]byte, error) {
	keys := &appStateKeyStore{NoopStore: &store.NoopStore{}, id: keyID, key: key}
	proc := appstate.NewProcessor(&store.Device{AppStateKeys: keys, AppState: &store.NoopStore{}}, waLog.Noop)
	raw, err := proc.EncodePatch(ctx, keyID, appstate.HashState{}, appstate.BuildSettingPushName(pushName))
	if err != nil {
		return nil, fmt.Errorf("encode push name patch: %w", err)
	}
	// Clients send patches without a version; the server assigns it.
	var patch waServerSync.SyncdPatch
	if err := proto.Unmarshal(raw, &patch); err != nil {
		return nil, fmt.Errorf("decode push name patch: %w", err)
	}
	patch.Version = &waServerSync.SyncdVersion{Version: proto.Uint64(1)}
	return proto.Marshal(&patch)
}

// handleAppStateIQ answers a w:sync:app:state query: the collections of
// the device with the patches newer than the version the client has, and
// no snapshot (snapshots live on the media servers, which are not
// emulated).
func (c *conn) handleAppStateIQ(node *waBinary.Node) *waBinary.Node {
	s := c.srv
	s.mu.Lock()
	state := s.appState[deviceJID(c.user, c.device)]
	s.mu.Unlock()
	var out []waBinary.Node
	sync := node.GetChildByTag("sync")
	for _, coll := range sync.GetChildren() {
		if coll.Tag != "collection" {
			continue
		}
		ag := coll.AttrGetter()
		name := appstate.WAPatchName(ag.OptionalString("name"))
		have := uint64(0)
		if v, ok := ag.GetUint64("version", false); ok {
			have = v
		}
		resp := waBinary.Node{Tag: "collection", Attrs: waBinary.Attrs{"name": string(name), "version": have}}
		if state != nil {
			if patch := state.patches[name]; patch != nil && have < 1 {
				resp.Attrs["version"] = uint64(1)
				resp.Content = []waBinary.Node{{Tag: "patches", Content: []waBinary.Node{{Tag: "patch", Content: patch}}}}
			}
		}
		out = append(out, resp)
	}
	return &waBinary.Node{Content: []waBinary.Node{{Tag: "sync", Content: out}}}
}

// padMessage adds the random padding whatsmeow expects on v2 messages: n
// bytes of value n, 1 <= n <= 15.
func padMessage(plaintext []byte) []byte {
	var b [1]byte
	_, _ = rand.Read(b[:])
	n := int(b[0]&0x0f) | 1
	for range n {
		plaintext = append(plaintext, byte(n))
	}
	return plaintext
}

// newMessageID returns a message ID in the phone's style.
func newMessageID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "3A" + strings.ToUpper(hex.EncodeToString(b))
}

// appStateKeyStore holds the one app state key the phone encodes with.
type appStateKeyStore struct {
	*store.NoopStore
	id  []byte
	key *store.AppStateSyncKey
}

func (a *appStateKeyStore) GetAppStateSyncKey(_ context.Context, id []byte) (*store.AppStateSyncKey, error) {
	if string(id) == string(a.id) {
		return a.key, nil
	}
	return nil, nil
}
