package fakeserver

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/whatsmeow/proto/waWa6"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/util/keys"
	"google.golang.org/protobuf/proto"
)

// This file is the responder side of WhatsApp's
// Noise_XX_25519_AESGCM_SHA256 handshake and the transport that follows it,
// mirroring whatsmeow's socket/noisehandshake.go step by step: every
// Authenticate, Encrypt, Decrypt and MixSharedSecret the client does is
// matched here in the same order, or the transcript hashes diverge.

// errBadHandshake reports a client that did not follow the handshake.
var errBadHandshake = errors.New("bad noise handshake")

// symmetricState is the Noise handshake's chaining key (salt), transcript
// hash and current cipher.
type symmetricState struct {
	hash    []byte
	salt    []byte
	key     cipher.AEAD
	counter uint32
}

func newSymmetricState(header []byte) *symmetricState {
	pattern := []byte(socket.NoiseStartPattern)
	var h []byte
	if len(pattern) == 32 {
		h = pattern
	} else {
		sum := sha256.Sum256(pattern)
		h = sum[:]
	}
	st := &symmetricState{hash: h, salt: h, key: mustGCM(h)}
	st.authenticate(header)
	return st
}

func (st *symmetricState) authenticate(data []byte) {
	sum := sha256.Sum256(append(st.hash, data...))
	st.hash = sum[:]
}

func (st *symmetricState) encrypt(plaintext []byte) []byte {
	ct := st.key.Seal(nil, counterIV(st.counter), plaintext, st.hash)
	st.counter++
	st.authenticate(ct)
	return ct
}

func (st *symmetricState) decrypt(ciphertext []byte) ([]byte, error) {
	pt, err := st.key.Open(nil, counterIV(st.counter), ciphertext, st.hash)
	st.counter++
	if err != nil {
		return nil, err
	}
	st.authenticate(ciphertext)
	return pt, nil
}

func (st *symmetricState) mixSharedSecret(priv, pub *[32]byte) error {
	// libsignal's X25519 (third_party/libsignal.patch), as whatsmeow's side
	// of the handshake uses: one scalar multiplication, not curve25519's two.
	var secret [32]byte
	if err := ecc.X25519(&secret, priv, pub); err != nil {
		return fmt.Errorf("x25519: %w", err)
	}
	write, read := extractAndExpand(st.salt, secret[:])
	st.salt = write
	st.key = mustGCM(read)
	st.counter = 0
	return nil
}

// transportKeys splits the final chaining key. The client writes with the
// first key and reads with the second, so the server does the opposite.
func (st *symmetricState) transportKeys() (read, write cipher.AEAD) {
	first, second := extractAndExpand(st.salt, nil)
	return mustGCM(first), mustGCM(second)
}

func extractAndExpand(salt, data []byte) (first, second []byte) {
	out, err := hkdf.Key(sha256.New, data, salt, "", 64)
	if err != nil {
		panic(fmt.Errorf("hkdf: %w", err)) // cannot happen for 64 bytes
	}
	return out[:32], out[32:]
}

func mustGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(fmt.Errorf("aes key: %w", err)) // keys are always 32 bytes
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Errorf("gcm: %w", err))
	}
	return gcm
}

func counterIV(n uint32) []byte {
	iv := make([]byte, 12)
	binary.BigEndian.PutUint32(iv[8:], n)
	return iv
}

// handshake runs the server side of the handshake over frames. It returns
// the transport cipher, the client's static (noise) public key and its
// ClientPayload.
func handshake(fr *frameConn, id *serverIdentity) (*transport, *[32]byte, *waWa6.ClientPayload, error) {
	first, err := fr.readFrame()
	if err != nil {
		return nil, nil, nil, err
	}
	if !bytes.Equal(fr.header, socket.WAConnHeader) {
		return nil, nil, nil, fmt.Errorf("%w: unexpected connection header %x", errBadHandshake, fr.header)
	}
	var hello waWa6.HandshakeMessage
	if err := proto.Unmarshal(first, &hello); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: client hello: %w", errBadHandshake, err)
	}
	clientEphemeral := hello.GetClientHello().GetEphemeral()
	if len(clientEphemeral) != 32 {
		return nil, nil, nil, fmt.Errorf("%w: client ephemeral key missing", errBadHandshake)
	}
	clientEph := (*[32]byte)(clientEphemeral)

	st := newSymmetricState(fr.header)
	st.authenticate(clientEphemeral)
	eph := keys.NewKeyPair()
	st.authenticate(eph.Pub[:])
	if err := st.mixSharedSecret(eph.Priv, clientEph); err != nil {
		return nil, nil, nil, err
	}
	staticCT := st.encrypt(id.static.Pub[:])
	if err := st.mixSharedSecret(id.static.Priv, clientEph); err != nil {
		return nil, nil, nil, err
	}
	certCT := st.encrypt(id.certChain)
	serverHello, err := proto.Marshal(&waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{
		Ephemeral: eph.Pub[:],
		Static:    staticCT,
		Payload:   certCT,
	}})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("marshal server hello: %w", err)
	}
	if err := fr.writeFrame(serverHello); err != nil {
		return nil, nil, nil, err
	}

	finishRaw, err := fr.readFrame()
	if err != nil {
		return nil, nil, nil, err
	}
	var finish waWa6.HandshakeMessage
	if err := proto.Unmarshal(finishRaw, &finish); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: client finish: %w", errBadHandshake, err)
	}
	clientStatic, err := st.decrypt(finish.GetClientFinish().GetStatic())
	if err != nil || len(clientStatic) != 32 {
		return nil, nil, nil, fmt.Errorf("%w: client static key", errBadHandshake)
	}
	clientStaticKey := (*[32]byte)(clientStatic)
	if err := st.mixSharedSecret(eph.Priv, clientStaticKey); err != nil {
		return nil, nil, nil, err
	}
	payloadRaw, err := st.decrypt(finish.GetClientFinish().GetPayload())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: client payload", errBadHandshake)
	}
	var payload waWa6.ClientPayload
	if err := proto.Unmarshal(payloadRaw, &payload); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: client payload: %w", errBadHandshake, err)
	}
	read, write := st.transportKeys()
	return &transport{read: read, write: write}, clientStaticKey, &payload, nil
}

// transport encrypts and decrypts frames after the handshake. Each direction
// has its own key and counter; callers serialise writes.
type transport struct {
	read, write           cipher.AEAD
	readCount, writeCount uint32
}

func (t *transport) open(ciphertext []byte) ([]byte, error) {
	pt, err := t.read.Open(ciphertext[:0], counterIV(t.readCount), ciphertext, nil)
	t.readCount++
	return pt, err
}

func (t *transport) seal(plaintext []byte) []byte {
	ct := t.write.Seal(nil, counterIV(t.writeCount), plaintext, nil)
	t.writeCount++
	return ct
}
