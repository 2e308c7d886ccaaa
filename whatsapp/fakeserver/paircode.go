package fakeserver

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	"golang.org/x/crypto/curve25519"
)

// Phone-number pairing, as in whatsmeow's pair-code.go. The server relays
// between the companion (the whatsmeow client) and the phone, and here it
// plays the phone too:
//
//  1. companion_hello iq: the client's ephemeral key, wrapped (AES-CTR) with
//     a key derived from the 8-character code. The server answers with a
//     pairing ref and keeps the request.
//  2. EnterPairingCode (the user types the code on the phone): the phone
//     unwraps the client's ephemeral key with the code, wraps its own
//     ephemeral key the same way and sends it, with its identity key, in a
//     link_code_companion_reg notification.
//  3. companion_finish iq: the client's key bundle (its identity, the
//     phone's identity, random ADV input), AES-GCM encrypted with a key
//     from the ephemeral DH. Only a phone that used the right code can
//     open it; both sides then derive the ADV secret.
//  4. pair-success, pair-device-sign and stream error 515 as for QR codes.

const (
	linkCodeRounds       = 2 << 16 // PBKDF2 rounds whatsmeow uses for the code
	linkCodeLength       = 8
	wrappedKeyLength     = 80 // salt 32 + iv 16 + key 32
	keyBundleInfo        = "link_code_pairing_key_bundle_encryption_key"
	advSecretInfo        = "adv_secret"
	keyBundleSaltLength  = 32
	keyBundleNonceLength = 12
)

// codeRequest is a client's pending companion_hello.
type codeRequest struct {
	phone          string
	wrappedCompEph []byte // the client's wrapped ephemeral public key
	ref            []byte
}

// handleCodeRegistration answers link_code_companion_reg iqs from an
// unpaired client. It runs on the connection's goroutine.
func (c *conn) handleCodeRegistration(reg *waBinary.Node) *waBinary.Node {
	if c.reg == nil {
		return nil
	}
	ag := reg.AttrGetter()
	switch ag.OptionalString("stage") {
	case "companion_hello":
		jid, _ := reg.Attrs["jid"].(types.JID)
		wrapped, _ := reg.GetChildByTag("link_code_pairing_wrapped_companion_ephemeral_pub").Content.([]byte)
		if jid.User == "" || len(wrapped) != wrappedKeyLength {
			c.log.Debug("malformed companion_hello")
			return nil
		}
		req := &codeRequest{phone: jid.User, wrappedCompEph: wrapped, ref: []byte(randomBase64(24))}
		c.mu.Lock()
		c.code = req
		c.mu.Unlock()
		s := c.srv
		s.mu.Lock()
		if _, ok := s.unpaired[c]; ok {
			s.codeConns[req.phone] = c
		}
		s.mu.Unlock()
		return &waBinary.Node{Content: []waBinary.Node{{
			Tag:     "link_code_companion_reg",
			Content: []waBinary.Node{{Tag: "link_code_pairing_ref", Content: req.ref}},
		}}}
	case "companion_finish":
		// Hand the bundle to the EnterPairingCode call waiting for it; a
		// bundle nobody waits for is stale and dropped.
		select {
		case c.finish <- reg:
		default:
		}
	}
	return nil
}

// EnterPairingCode acts as the phone phone typing the code the client's
// PairPhone returned. It completes the pairing and returns the device JID,
// or ErrWrongCode if the code does not match (the client keeps waiting and
// a later call with the right code still pairs it).
func (s *Server) EnterPairingCode(ctx context.Context, phone, code string) (string, error) {
	phone = digitsOnly(phone)
	code = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	if phone == "" || len(code) != linkCodeLength {
		return "", fmt.Errorf("%w: need a phone number and an 8-character code", ErrInvalidArgument)
	}
	s.mu.Lock()
	c := s.codeConns[phone]
	s.mu.Unlock()
	if c == nil {
		return "", ErrNoPendingPairing
	}
	if err := c.beginPairing(); err != nil {
		return "", err
	}
	defer c.endPairing()
	c.mu.Lock()
	req := c.code
	c.mu.Unlock()

	companionEph, err := unwrapKey(code, req.wrappedCompEph)
	if err != nil {
		return "", err
	}
	phoneEph := keys.NewKeyPair()
	wrappedPhoneEph, err := wrapKey(code, phoneEph.Pub[:])
	if err != nil {
		return "", err
	}
	identity := phoneIdentity(phone)

	// Drop a bundle left over from an earlier attempt before asking for a
	// new one.
	select {
	case <-c.finish:
	default:
	}
	err = c.send(waBinary.Node{
		Tag: "notification",
		Attrs: waBinary.Attrs{
			"from": types.ServerJID,
			"type": "link_code_companion_reg",
			"id":   s.newIQID(),
			"t":    time.Now().Unix(),
		},
		Content: []waBinary.Node{{
			Tag: "link_code_companion_reg",
			Content: []waBinary.Node{
				{Tag: "link_code_pairing_ref", Content: req.ref},
				{Tag: "link_code_pairing_wrapped_primary_ephemeral_pub", Content: wrappedPhoneEph},
				{Tag: "primary_identity_pub", Content: identity.Pub[:]},
			},
		}},
	})
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPairingFailed, err)
	}

	var finish *waBinary.Node
	for finish == nil {
		select {
		case f := <-c.finish:
			if ref, _ := f.GetChildByTag("link_code_pairing_ref").Content.([]byte); bytes.Equal(ref, req.ref) {
				finish = f
			}
		case <-ctx.Done():
			return "", ctx.Err()
		case <-c.ctx.Done():
			return "", fmt.Errorf("%w: %w", ErrPairingFailed, errConnClosed)
		}
	}
	bundle, _ := finish.GetChildByTag("link_code_pairing_wrapped_key_bundle").Content.([]byte)
	if len(bundle) <= keyBundleSaltLength+keyBundleNonceLength {
		return "", fmt.Errorf("%w: key bundle missing", ErrPairingFailed)
	}
	ephShared, err := curve25519.X25519(phoneEph.Priv[:], companionEph)
	if err != nil {
		return "", ErrWrongCode // a wrong code unwraps to a key that may not even be a valid point
	}
	plain, err := openKeyBundle(ephShared, bundle)
	if err != nil {
		return "", ErrWrongCode
	}
	// The bundle is the client's identity, the phone's identity and 32
	// random bytes for the ADV secret.
	if len(plain) != 96 || !bytes.Equal(plain[:32], c.reg.identityPub[:]) || !bytes.Equal(plain[32:64], identity.Pub[:]) {
		return "", fmt.Errorf("%w: key bundle names other keys", ErrPairingFailed)
	}
	identityShared, err := curve25519.X25519(identity.Priv[:], plain[:32])
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPairingFailed, err)
	}
	advSecret, err := hkdf.Key(sha256.New, concat(ephShared, identityShared, plain[64:96]), nil, advSecretInfo, 32)
	if err != nil {
		return "", err
	}
	return c.completePairing(ctx, phone, advSecret)
}

// linkCodeCipher is AES-CTR keyed by PBKDF2 of the code, as whatsmeow wraps
// ephemeral keys.
func linkCodeCipher(code string, salt, iv []byte) (cipher.Stream, error) {
	key, err := pbkdf2.Key(sha256.New, code, salt, linkCodeRounds, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewCTR(block, iv), nil
}

func unwrapKey(code string, wrapped []byte) ([]byte, error) {
	stream, err := linkCodeCipher(code, wrapped[:32], wrapped[32:48])
	if err != nil {
		return nil, err
	}
	out := make([]byte, 32)
	stream.XORKeyStream(out, wrapped[48:80])
	return out, nil
}

func wrapKey(code string, pub []byte) ([]byte, error) {
	out := make([]byte, wrappedKeyLength)
	_, _ = rand.Read(out[:48]) // salt and iv
	stream, err := linkCodeCipher(code, out[:32], out[32:48])
	if err != nil {
		return nil, err
	}
	stream.XORKeyStream(out[48:], pub)
	return out, nil
}

func openKeyBundle(ephShared, bundle []byte) ([]byte, error) {
	salt := bundle[:keyBundleSaltLength]
	nonce := bundle[keyBundleSaltLength : keyBundleSaltLength+keyBundleNonceLength]
	key, err := hkdf.Key(sha256.New, ephShared, salt, keyBundleInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, nonce, bundle[keyBundleSaltLength+keyBundleNonceLength:], nil)
}

func digitsOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}
