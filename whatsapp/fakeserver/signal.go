package fakeserver

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/optional"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/util/keys"
)

// Every phone number has a primary device, device 0: the phone of its own
// account (it signs the account's companions, shares app state with them
// and reads the copies of what they send) and, for every other account, a
// fake contact. Its Signal keys derive from the number, so any server
// instance speaks for it. Its sessions live in memory.

// Seeds of the keys derived from a phone number, besides phoneIdentitySeed.
const (
	phoneSignedPreKeySeed = "whatsapp-sessions fakeserver phone signed prekey v1:"
	phoneRegistrationSeed = "whatsapp-sessions fakeserver phone registration v1:"
	seedIdentitySeed      = "whatsapp-sessions fakeserver seeded identity v1:"
	seedSignedPreKeySeed  = "whatsapp-sessions fakeserver seeded signed prekey v1:"
	seedRegistrationSeed  = "whatsapp-sessions fakeserver seeded registration v1:"
)

// signedPreKeyID is the ID of every derived signed prekey, as whatsmeow
// gives its own first one.
const signedPreKeyID = 1

// primary is the primary device of a phone number. mu guards its sessions
// and serialises its Signal operations; nothing else is held meanwhile
// but a device queue's lock (taken first).
type primary struct {
	user     string
	identity *identity.KeyPair
	regID    uint32
	signed   *record.SignedPreKey

	mu       sync.Mutex
	sessions map[string]*record.Session // by remote device (deviceRef.String())
}

func newPrimary(user string) *primary {
	id := phoneIdentity(user)
	spk := deriveKeyPair(phoneSignedPreKeySeed + user)
	sig := sign(id, append([]byte{ecc.DjbType}, spk.Pub[:]...))
	return &primary{
		user: user,
		identity: identity.NewKeyPair(
			identity.NewKey(ecc.NewDjbECPublicKey(*id.Pub)),
			ecc.NewDjbECPrivateKey(*id.Priv),
		),
		regID: registrationID(phoneRegistrationSeed + user),
		signed: record.NewSignedPreKey(signedPreKeyID, 0,
			ecc.NewECKeyPair(ecc.NewDjbECPublicKey(*spk.Pub), ecc.NewDjbECPrivateKey(*spk.Priv)),
			sig, store.SignalProtobufSerializer.SignedPreKeyRecord),
		sessions: make(map[string]*record.Session),
	}
}

// primaryOf returns the primary device of user, creating it.
func (s *Server) primaryOf(user string) *primary {
	s.pmu.Lock()
	p := s.primaries[user]
	s.pmu.Unlock()
	if p != nil {
		return p
	}
	// Derived outside the lock (it is crypto); the first one stored wins.
	p = newPrimary(user)
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if prev := s.primaries[user]; prev != nil {
		return prev
	}
	s.primaries[user] = p
	return p
}

// registrationID derives a Signal registration ID (1 to 16380) from seed.
func registrationID(seed string) uint32 {
	sum := sha256.Sum256([]byte(seed))
	return binary.BigEndian.Uint32(sum[:4])%16380 + 1
}

// remoteAddress is the Signal address a primary keeps its session with
// device d under.
func remoteAddress(d deviceRef) *protocol.SignalAddress {
	return protocol.NewSignalAddress(d.user, uint32(d.device))
}

// encrypt encrypts padded plaintext for device to, opening a session from
// bundle if there is none yet. It reports whether the result is a prekey
// message ("pkmsg"), as every message is until the session is known to be
// established (established).
func (p *primary) encrypt(ctx context.Context, to deviceRef, bundle func() (*prekey.Bundle, error), plaintext []byte) ([]byte, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	builder, err := p.openLocked(ctx, to, bundle)
	if err != nil {
		return nil, false, err
	}
	msg, err := session.NewCipher(builder, remoteAddress(to)).Encrypt(ctx, plaintext)
	if err != nil {
		return nil, false, fmt.Errorf("signal encrypt: %w", err)
	}
	return msg.Serialize(), msg.Type() == protocol.PREKEY_TYPE, nil
}

// open opens a session with device to from bundle if there is none yet.
func (p *primary) open(ctx context.Context, to deviceRef, bundle func() (*prekey.Bundle, error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.openLocked(ctx, to, bundle)
	return err
}

// openLocked is open with p.mu held; it returns the session's builder.
func (p *primary) openLocked(ctx context.Context, to deviceRef, bundle func() (*prekey.Bundle, error)) (*session.Builder, error) {
	builder := session.NewBuilder(p, p, p, p, remoteAddress(to), store.SignalProtobufSerializer)
	if p.sessions[to.String()] != nil {
		return builder, nil
	}
	b, err := bundle()
	if err != nil {
		return nil, err
	}
	if err := builder.ProcessBundle(ctx, b); err != nil {
		return nil, fmt.Errorf("open signal session: %w", err)
	}
	return builder, nil
}

// established forgets that the session with device d still owes its
// prekey: d decrypted a prekey message of it, so later messages are plain
// ones ("msg").
func (p *primary) established(d deviceRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.sessions[d.String()]; r != nil {
		r.SessionState().ClearUnackPreKeyMessage()
	}
}

// forget drops the session with device d.
func (p *primary) forget(d deviceRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.sessions, d.String())
}

// decrypt decrypts an <enc> of type pkmsg or msg from device from and
// removes whatsmeow's padding.
func (p *primary) decrypt(ctx context.Context, from deviceRef, encType string, ciphertext []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr := remoteAddress(from)
	cipher := session.NewCipher(session.NewBuilder(p, p, p, p, addr, store.SignalProtobufSerializer), addr)
	var plain []byte
	switch encType {
	case "pkmsg":
		msg, err := protocol.NewPreKeySignalMessageFromBytes(ciphertext, store.SignalProtobufSerializer.PreKeySignalMessage, store.SignalProtobufSerializer.SignalMessage)
		if err != nil {
			return nil, fmt.Errorf("parse prekey message: %w", err)
		}
		if plain, err = cipher.DecryptMessage(ctx, msg); err != nil {
			return nil, fmt.Errorf("decrypt prekey message: %w", err)
		}
	case "msg":
		msg, err := protocol.NewSignalMessageFromBytes(ciphertext, store.SignalProtobufSerializer.SignalMessage)
		if err != nil {
			return nil, fmt.Errorf("parse message: %w", err)
		}
		if plain, err = cipher.Decrypt(ctx, msg); err != nil {
			return nil, fmt.Errorf("decrypt message: %w", err)
		}
	default:
		return nil, fmt.Errorf("unsupported enc type %q", encType)
	}
	return unpad(plain)
}

// unpad removes the v2 padding padMessage adds.
func unpad(plain []byte) ([]byte, error) {
	if len(plain) == 0 {
		return nil, errors.New("empty plaintext")
	}
	n := int(plain[len(plain)-1])
	if n == 0 || n > len(plain) {
		return nil, errors.New("bad padding")
	}
	return plain[:len(plain)-n], nil
}

// bundleNode is the primary's prekey bundle as an encrypt iq answers it,
// for the requested JID jid. The phone keeps no one-time prekeys.
func (p *primary) bundleNode(jid any) waBinary.Node {
	sig := p.signed.Signature()
	pub := p.signed.KeyPair().PublicKey().PublicKey()
	id := p.identity.PublicKey().PublicKey().PublicKey()
	return bundleNode(jid, p.regID, id, signedPreKey{id: signedPreKeyID, pub: pub, sig: sig}, nil)
}

// signedPreKey and oneTimePreKey are the public prekeys of a companion.
type (
	signedPreKey struct {
		id  uint32
		pub [32]byte
		sig [64]byte
	}
	oneTimePreKey struct {
		id  uint32
		pub [32]byte
	}
)

// bundleNode is one <user> of an encrypt iq's answer: the keys whatsmeow's
// nodeToPreKeyBundle reads.
func bundleNode(jid any, regID uint32, identityPub [32]byte, spk signedPreKey, otk *oneTimePreKey) waBinary.Node {
	var reg [4]byte
	binary.BigEndian.PutUint32(reg[:], regID)
	children := []waBinary.Node{
		{Tag: "registration", Content: reg[:]},
		{Tag: "type", Content: []byte{ecc.DjbType}},
		{Tag: "identity", Content: identityPub[:]},
	}
	if otk != nil {
		children = append(children, waBinary.Node{Tag: "key", Content: []waBinary.Node{
			{Tag: "id", Content: keyID(otk.id)},
			{Tag: "value", Content: otk.pub[:]},
		}})
	}
	children = append(children, waBinary.Node{Tag: "skey", Content: []waBinary.Node{
		{Tag: "id", Content: keyID(spk.id)},
		{Tag: "value", Content: spk.pub[:]},
		{Tag: "signature", Content: spk.sig[:]},
	}})
	return waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid}, Content: children}
}

// keyID is a prekey ID on the wire: three bytes, big endian.
func keyID(id uint32) []byte {
	return []byte{byte(id >> 16), byte(id >> 8), byte(id)}
}

// companionKeys are the public keys of a companion device: from its
// registration at pairing, its prekey uploads, the state file, or derived
// for a seeded device (seeded).
type companionKeys struct {
	regID    uint32
	identity [32]byte
	signed   signedPreKey
	preKeys  []oneTimePreKey // uploaded and not handed out yet
	// seeded: derived (regID 0 until takeBundle derives them), the
	// server never saw the device register or upload.
	seeded bool
}

// bundle is the libsignal bundle of a companion: its signed prekey, and
// the one-time prekey otk if not nil.
func (k *companionKeys) bundle(device uint16, otk *oneTimePreKey) *prekey.Bundle {
	var (
		otkID  = optional.NewEmptyUint32()
		otkPub ecc.ECPublicKeyable
	)
	if otk != nil {
		otkID, otkPub = optional.NewOptionalUint32(otk.id), ecc.NewDjbECPublicKey(otk.pub)
	}
	return prekey.NewBundle(k.regID, uint32(device), otkID, k.signed.id, otkPub,
		ecc.NewDjbECPublicKey(k.signed.pub), k.signed.sig,
		identity.NewKey(ecc.NewDjbECPublicKey(k.identity)))
}

// seededKeys are the Signal keys SeedDevice gives device device of user,
// derived so that the server knows them without being told: the identity
// key pair, the signed prekey and the registration ID.
func seededKeys(user string, device uint16) (*keys.KeyPair, *keys.PreKey, uint32) {
	name := deviceRef{user: user, device: device}.String()
	id := deriveKeyPair(seedIdentitySeed + name)
	spk := deriveKeyPair(seedSignedPreKeySeed + name)
	sig := sign(id, append([]byte{ecc.DjbType}, spk.Pub[:]...))
	return id, &keys.PreKey{KeyPair: *spk, KeyID: signedPreKeyID, Signature: &sig}, registrationID(seedRegistrationSeed + name)
}

// seededCompanionKeys are seededKeys as the server holds them.
func seededCompanionKeys(d deviceRef) *companionKeys {
	id, spk, reg := seededKeys(d.user, d.device)
	return &companionKeys{
		regID:    reg,
		identity: *id.Pub,
		signed:   signedPreKey{id: spk.KeyID, pub: *spk.Pub, sig: *spk.Signature},
		seeded:   true,
	}
}

// The primary is its own libsignal store (session, prekey, signed prekey
// and identity stores), used with mu held.

// LoadSession implements libsignal's session store.
func (p *primary) LoadSession(_ context.Context, addr *protocol.SignalAddress) (*record.Session, error) {
	if r := p.sessions[addr.String()]; r != nil {
		return r, nil
	}
	return record.NewSession(store.SignalProtobufSerializer.Session, store.SignalProtobufSerializer.State), nil
}

// GetSubDeviceSessions implements libsignal's session store.
func (p *primary) GetSubDeviceSessions(context.Context, string) ([]uint32, error) { return nil, nil }

// StoreSession implements libsignal's session store.
func (p *primary) StoreSession(_ context.Context, addr *protocol.SignalAddress, r *record.Session) error {
	p.sessions[addr.String()] = r
	return nil
}

// ContainsSession implements libsignal's session store.
func (p *primary) ContainsSession(_ context.Context, addr *protocol.SignalAddress) (bool, error) {
	return p.sessions[addr.String()] != nil, nil
}

// DeleteSession implements libsignal's session store.
func (p *primary) DeleteSession(_ context.Context, addr *protocol.SignalAddress) error {
	delete(p.sessions, addr.String())
	return nil
}

// DeleteAllSessions implements libsignal's session store.
func (p *primary) DeleteAllSessions(context.Context) error {
	clear(p.sessions)
	return nil
}

// LoadPreKey implements libsignal's prekey store: the phone hands out no
// one-time prekeys.
func (p *primary) LoadPreKey(context.Context, uint32) (*record.PreKey, error) { return nil, nil }

// StorePreKey implements libsignal's prekey store.
func (p *primary) StorePreKey(context.Context, uint32, *record.PreKey) error { return nil }

// ContainsPreKey implements libsignal's prekey store.
func (p *primary) ContainsPreKey(context.Context, uint32) (bool, error) { return false, nil }

// RemovePreKey implements libsignal's prekey store.
func (p *primary) RemovePreKey(context.Context, uint32) error { return nil }

// LoadSignedPreKey implements libsignal's signed prekey store.
func (p *primary) LoadSignedPreKey(_ context.Context, id uint32) (*record.SignedPreKey, error) {
	if id != signedPreKeyID {
		return nil, nil
	}
	return p.signed, nil
}

// LoadSignedPreKeys implements libsignal's signed prekey store.
func (p *primary) LoadSignedPreKeys(context.Context) ([]*record.SignedPreKey, error) {
	return []*record.SignedPreKey{p.signed}, nil
}

// StoreSignedPreKey implements libsignal's signed prekey store.
func (p *primary) StoreSignedPreKey(context.Context, uint32, *record.SignedPreKey) error { return nil }

// ContainsSignedPreKey implements libsignal's signed prekey store.
func (p *primary) ContainsSignedPreKey(_ context.Context, id uint32) (bool, error) {
	return id == signedPreKeyID, nil
}

// RemoveSignedPreKey implements libsignal's signed prekey store.
func (p *primary) RemoveSignedPreKey(context.Context, uint32) error { return nil }

// GetIdentityKeyPair implements libsignal's identity store.
func (p *primary) GetIdentityKeyPair() *identity.KeyPair { return p.identity }

// GetLocalRegistrationID implements libsignal's identity store.
func (p *primary) GetLocalRegistrationID() uint32 { return p.regID }

// SaveIdentity implements libsignal's identity store.
func (p *primary) SaveIdentity(context.Context, *protocol.SignalAddress, *identity.Key) error {
	return nil
}

// IsTrustedIdentity implements libsignal's identity store: the server
// vouches for every device's keys, so the phone trusts them.
func (p *primary) IsTrustedIdentity(context.Context, *protocol.SignalAddress, *identity.Key) (bool, error) {
	return true, nil
}
