package fakeserver

import (
	"encoding/binary"
	"slices"

	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

// The server keeps the public keys of every companion it knows: from the
// registration at pairing, from prekey uploads, from the state file, and
// for a device it never saw register (a seeded one) the keys SeedDevice
// derives. Prekey bundles of companions and of primaries (device 0) are
// served from them.

// knowCompanionLocked registers companion d if the server has no keys of
// it yet: it logged in, so it is a device SeedDevice wrote (or one paired
// with an earlier instance that kept no state file). Its keys are derived
// when first needed (takeBundle), not here: login holds s.mu.
func (s *Server) knowCompanionLocked(d deviceRef) {
	devs := s.companions[d.user]
	if devs == nil {
		devs = make(map[uint16]*companionKeys)
		s.companions[d.user] = devs
	}
	if devs[d.device] == nil {
		devs[d.device] = &companionKeys{seeded: true}
	}
}

// setCompanionLocked records the keys of companion d, replacing any.
func (s *Server) setCompanionLocked(d deviceRef, k *companionKeys) {
	devs := s.companions[d.user]
	if devs == nil {
		devs = make(map[uint16]*companionKeys)
		s.companions[d.user] = devs
	}
	devs[d.device] = k
}

// companionsOf lists the companions of user the server knows, in device
// order.
func (s *Server) companionsOf(user string) []deviceRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]deviceRef, 0, len(s.companions[user]))
	for dev := range s.companions[user] {
		out = append(out, deviceRef{user: user, device: dev})
	}
	slices.SortFunc(out, func(a, b deviceRef) int { return int(a.device) - int(b.device) })
	return out
}

// takeBundle is the prekey bundle of companion d, with one of its uploaded
// one-time prekeys, which it hands out only once (as WhatsApp does). A
// device the server has no keys of gets the keys SeedDevice derives,
// derived outside s.mu.
func (s *Server) takeBundle(d deviceRef) (companionKeys, *oneTimePreKey) {
	s.mu.Lock()
	k := s.companions[d.user][d.device]
	if k != nil && k.regID != 0 {
		defer s.mu.Unlock()
		var otk *oneTimePreKey
		if len(k.preKeys) > 0 {
			otk = &k.preKeys[0]
			k.preKeys = k.preKeys[1:]
		}
		return companionKeys{regID: k.regID, identity: k.identity, signed: k.signed}, otk
	}
	s.mu.Unlock()
	derived := seededCompanionKeys(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.companions[d.user][d.device]; k != nil && k.regID == 0 {
		k.regID, k.identity, k.signed = derived.regID, derived.identity, derived.signed
	}
	return *derived, nil
}

// companionBundle is takeBundle as libsignal takes it.
func (s *Server) companionBundle(d deviceRef) (*prekey.Bundle, error) {
	k, otk := s.takeBundle(d)
	return k.bundle(d.device, otk), nil
}

// handleEncryptIQ answers the prekey iqs: the count query (what the device
// uploaded and nobody fetched yet; a device that never uploaded to this
// instance, such as a seeded one, is assumed to hold a full batch, as the
// real server would after an earlier session), the upload, and prekey
// bundle fetches.
func (c *conn) handleEncryptIQ(node *waBinary.Node) *waBinary.Node {
	if c.user == "" {
		return nil
	}
	s := c.srv
	me := deviceRef{user: c.user, device: c.device}
	if _, ok := node.GetOptionalChildByTag("count"); ok {
		s.mu.Lock()
		n := whatsmeow.WantedPreKeyCount
		if k := s.companions[me.user][me.device]; k != nil && !k.seeded {
			n = len(k.preKeys)
		}
		s.mu.Unlock()
		return &waBinary.Node{Content: []waBinary.Node{{Tag: "count", Attrs: waBinary.Attrs{"value": n}}}}
	}
	if list, ok := node.GetOptionalChildByTag("list"); ok {
		s.handleUpload(me, node, list.GetChildren())
		return nil
	}
	if key, ok := node.GetOptionalChildByTag("key"); ok {
		var users []waBinary.Node
		for _, u := range key.GetChildren() {
			jid, ok := u.Attrs["jid"].(types.JID)
			user, known := numberOf(jid)
			if u.Tag != "user" || !ok || !known || !onWhatsApp(user) {
				continue
			}
			if jid.Device == 0 {
				users = append(users, s.primaryOf(user).bundleNode(jid))
				continue
			}
			k, otk := s.takeBundle(deviceRef{user: user, device: jid.Device})
			users = append(users, bundleNode(jid, k.regID, k.identity, k.signed, otk))
		}
		return &waBinary.Node{Content: []waBinary.Node{{Tag: "list", Content: users}}}
	}
	return nil
}

// handleUpload records a prekey upload: the device's identity,
// registration ID and signed prekey (the same as at pairing, or what a
// seeded device really holds) and its one-time prekeys.
func (s *Server) handleUpload(me deviceRef, node *waBinary.Node, list []waBinary.Node) {
	reg, _ := node.GetChildByTag("registration").Content.([]byte)
	id, _ := node.GetChildByTag("identity").Content.([]byte)
	spk, spkOK := preKeyFromNode(node.GetChildByTag("skey"))
	otks := make([]oneTimePreKey, 0, len(list))
	for _, n := range list {
		if k, ok := preKeyFromNode(n); ok {
			otks = append(otks, oneTimePreKey{id: k.id, pub: k.pub})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.companions[me.user][me.device]
	if k == nil || k.seeded {
		if len(reg) != 4 || len(id) != 32 || !spkOK {
			return
		}
		k = &companionKeys{regID: binary.BigEndian.Uint32(reg), identity: [32]byte(id), signed: spk}
		s.setCompanionLocked(me, k)
	}
	k.preKeys = append(k.preKeys, otks...)
}

// preKeyFromNode reads a <key> or <skey> element of an upload.
func preKeyFromNode(n waBinary.Node) (signedPreKey, bool) {
	id, _ := n.GetChildByTag("id").Content.([]byte)
	pub, _ := n.GetChildByTag("value").Content.([]byte)
	if len(id) != 3 || len(pub) != 32 {
		return signedPreKey{}, false
	}
	out := signedPreKey{id: uint32(id[0])<<16 | uint32(id[1])<<8 | uint32(id[2]), pub: [32]byte(pub)}
	if n.Tag == "skey" {
		sig, _ := n.GetChildByTag("signature").Content.([]byte)
		if len(sig) != 64 {
			return signedPreKey{}, false
		}
		out.sig = [64]byte(sig)
	}
	return out, true
}

// learnKeys records the keys device d sent in a retry receipt (node, with
// its <keys> element keys): its registration ID, identity, signed prekey
// and one one-time prekey, replacing what the server held.
func (s *Server) learnKeys(d deviceRef, node, keys *waBinary.Node) {
	reg, _ := node.GetChildByTag("registration").Content.([]byte)
	id, _ := keys.GetChildByTag("identity").Content.([]byte)
	spk, spkOK := preKeyFromNode(keys.GetChildByTag("skey"))
	otk, otkOK := preKeyFromNode(keys.GetChildByTag("key"))
	if len(reg) != 4 || len(id) != 32 || !spkOK {
		return
	}
	k := &companionKeys{regID: binary.BigEndian.Uint32(reg), identity: [32]byte(id), signed: spk}
	if otkOK {
		k.preKeys = []oneTimePreKey{{id: otk.id, pub: otk.pub}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setCompanionLocked(d, k)
	if err := s.saveStateLocked(); err != nil {
		s.log.Warn("device keys not kept in the state file", "err", err)
	}
}
