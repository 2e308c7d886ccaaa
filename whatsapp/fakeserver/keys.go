package fakeserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"time"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCert"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	"google.golang.org/protobuf/proto"
)

// The seeds below are constants so that every process derives the same keys:
// a client trusting the root key of one process trusts a fake server started
// by another (cmd/fakewa), and a LID or phone identity derived here is the
// same in every server instance.
const (
	rootKeySeed       = "whatsapp-sessions fakeserver test root key v1"
	phoneIdentitySeed = "whatsapp-sessions fakeserver phone identity v1:"
	lidSeed           = "whatsapp-sessions fakeserver lid v1:"
)

// certValidity is how long the generated intermediate and leaf certificates
// are valid; certBackdate covers clock skew between processes.
const (
	certValidity = 10 * 365 * 24 * time.Hour
	certBackdate = time.Hour
)

var (
	testRootKey     = deriveKeyPair(rootKeySeed)
	useTestRootOnce sync.Once
)

// UseTestRootKey makes whatsmeow trust fake servers: it puts the fixed test
// root public key into whatsmeow.WACertPubKey. It is idempotent and must run
// before any client connects (whatsmeow reads the variable without locking).
// Production code never calls it.
func UseTestRootKey() {
	useTestRootOnce.Do(func() {
		whatsmeow.WACertPubKey = *testRootKey.Pub
	})
}

// deriveKeyPair derives a Curve25519 key pair from a seed string.
func deriveKeyPair(seed string) *keys.KeyPair {
	priv := sha256.Sum256([]byte(seed))
	priv[0] &= 248
	priv[31] &= 127
	priv[31] |= 64
	return keys.NewKeyPairFromPrivateKey(priv)
}

// phoneIdentity is the identity key pair of the primary device ("phone") of
// user. It signs the ADV device identity of every companion it pairs.
func phoneIdentity(user string) *keys.KeyPair {
	return deriveKeyPair(phoneIdentitySeed + user)
}

// lidUser is the LID user part the server assigns to phone number user: a
// 16-digit number that does not show the phone number but maps back to it
// (userOfLID), so every server instance reports the same LID for the same
// number and can tell whose LID a client addresses without remembering
// it. Numbers of more than 15 digits, which no phone has, get a hash.
func lidUser(user string) string {
	n, ok := new(big.Int).SetString(user, 10)
	if !ok || len(user) > 15 || n.Sign() <= 0 || user[0] == '0' {
		sum := sha256.Sum256([]byte(lidSeed + user))
		return "9" + strconv.FormatUint(binary.BigEndian.Uint64(sum[:8])%lidSpan.Uint64(), 10)
	}
	n.Mul(n, lidFactor).Add(n, lidShift).Mod(n, lidSpan).Add(n, lidSpan)
	return n.String()
}

// userOfLID is the phone number whose LID user part is lid, if any.
func userOfLID(lid string) (string, bool) {
	n, ok := new(big.Int).SetString(lid, 10)
	if !ok || len(lid) != 16 || lid[0] != '1' {
		return "", false
	}
	n.Sub(n, lidSpan).Sub(n, lidShift).Mul(n, lidFactorInverse).Mod(n, lidSpan)
	if n.Sign() <= 0 {
		return "", false
	}
	return n.String(), true
}

// An LID is 10^15 + (phone * lidFactor + lidShift) mod 10^15: a bijection,
// since lidFactor is prime to 10.
var (
	lidSpan          = big.NewInt(1_000_000_000_000_000)
	lidFactor        = big.NewInt(385_461_829_067_331)
	lidShift         = big.NewInt(271_828_182_845_904)
	lidFactorInverse = new(big.Int).ModInverse(lidFactor, lidSpan)
)

// deviceLID is the LID of device number device of user.
func deviceLID(user string, device uint16) types.JID {
	return types.JID{User: lidUser(user), Device: device, Server: types.HiddenUserServer}
}

// deviceJID is the phone-number JID of device number device of user.
func deviceJID(user string, device uint16) types.JID {
	return types.JID{User: user, Device: device, Server: types.DefaultUserServer}
}

// serverIdentity is the server's Noise static key and the certificate chain
// that vouches for it: an intermediate certificate signed by the test root
// key, and a leaf certificate for the static key signed by the intermediate.
type serverIdentity struct {
	static    *keys.KeyPair
	certChain []byte // marshalled waCert.CertChain
}

// newServerIdentity generates a fresh static key and its certificate chain.
func newServerIdentity(now time.Time) (*serverIdentity, error) {
	static := keys.NewKeyPair()
	intermediate := keys.NewKeyPair()
	notBefore := uint64(now.Add(-certBackdate).Unix())
	notAfter := uint64(now.Add(certValidity).Unix())
	serial := randomUint32()
	intermediateCert, err := signedCert(testRootKey, &waCert.CertChain_NoiseCertificate_Details{
		Serial:       proto.Uint32(serial),
		IssuerSerial: proto.Uint32(whatsmeow.WACertIssuerSerial),
		Key:          intermediate.Pub[:],
		NotBefore:    proto.Uint64(notBefore),
		NotAfter:     proto.Uint64(notAfter),
	})
	if err != nil {
		return nil, err
	}
	leafCert, err := signedCert(intermediate, &waCert.CertChain_NoiseCertificate_Details{
		Serial:       proto.Uint32(serial + 1),
		IssuerSerial: proto.Uint32(serial),
		Key:          static.Pub[:],
		NotBefore:    proto.Uint64(notBefore),
		NotAfter:     proto.Uint64(notAfter),
	})
	if err != nil {
		return nil, err
	}
	chain, err := proto.Marshal(&waCert.CertChain{Intermediate: intermediateCert, Leaf: leafCert})
	if err != nil {
		return nil, fmt.Errorf("marshal certificate chain: %w", err)
	}
	return &serverIdentity{static: static, certChain: chain}, nil
}

func signedCert(issuer *keys.KeyPair, details *waCert.CertChain_NoiseCertificate_Details) (*waCert.CertChain_NoiseCertificate, error) {
	raw, err := proto.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("marshal certificate details: %w", err)
	}
	sig := sign(issuer, raw)
	return &waCert.CertChain_NoiseCertificate{Details: raw, Signature: sig[:]}, nil
}

// sign makes an XEdDSA signature, the kind whatsmeow verifies with
// ecc.VerifySignature.
func sign(kp *keys.KeyPair, message []byte) [64]byte {
	return ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*kp.Priv), message)
}

func verify(pub []byte, message, signature []byte) bool {
	if len(pub) != 32 || len(signature) != 64 {
		return false
	}
	return ecc.VerifySignature(ecc.NewDjbECPublicKey([32]byte(pub)), message, [64]byte(signature))
}

// randomUint32 reads from crypto/rand, which never fails.
func randomUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}
