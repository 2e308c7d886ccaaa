package whatsapp_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/kdf"
	"go.mau.fi/libsignal/logger"
	"golang.org/x/crypto/curve25519"
)

// The libsignal the service builds with is third_party/libsignal: the
// pinned upstream version plus third_party/libsignal.patch, which gives it
// (and whatsmeow's Noise handshake and key pairs, through
// third_party/whatsmeow.patch) an X25519 without golang.org/x/crypto's
// extra scalar multiplication, and debug messages left unformatted for the
// default logger. TestPatchedCopiesAreThePinnedVersions fails when either
// side moves; the tests here check the new X25519 against crypto/ecdh,
// RFC 7748's vectors and the low-order points, and the logger.

// libsignalPatchedFiles are the files the patch changes, as patched
// (checked by TestPatchedCopiesAreThePinnedVersions).
var libsignalPatchedFiles = map[string]string{
	"ecc/Curve.go":     "7e189aaaa09af9c831334414b7a1112c93e431defb81615b1510ec3acd7d62e5",
	"ecc/x25519.go":    "6a36c7ca1dc4676809befd761d2a3291876616102b14399eddf38d3a0522753b",
	"kdf/HKDF.go":      "4a143e1a6d3af6d62d21c142f6928e3baffe5f44363bc8770a4d9784d43d7573",
	"logger/Logger.go": "0dd5169d4a668072604c4742329aa6d9ef40db5d965384de99e7b0ebf068b122",
}

func unhex32(t *testing.T, s string) (b [32]byte) {
	t.Helper()
	if n, err := hex.Decode(b[:], []byte(s)); err != nil || n != 32 {
		t.Fatalf("bad test vector %q: %v", s, err)
	}
	return b
}

// stdX25519 is crypto/ecdh's X25519 of scalar and point.
func stdX25519(t *testing.T, scalar, point [32]byte) ([]byte, error) {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(scalar[:])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.X25519().NewPublicKey(point[:])
	if err != nil {
		t.Fatal(err)
	}
	return priv.ECDH(pub)
}

// RFC 7748, section 5.2: two vectors, then the function iterated from
// k = u = 9 (the output becomes the next scalar, the scalar the next
// point), once and 1,000 times.
func TestX25519MeetsRFC7748(t *testing.T) {
	for _, v := range []struct{ scalar, point, want string }{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
	} {
		scalar, point := unhex32(t, v.scalar), unhex32(t, v.point)
		var got [32]byte
		if err := ecc.X25519(&got, &scalar, &point); err != nil || hex.EncodeToString(got[:]) != v.want {
			t.Errorf("X25519(%s, %s) = %x, %v; want %s", v.scalar, v.point, got, err, v.want)
		}
	}
	k := [32]byte{9}
	u := k
	for i := 1; i <= 1000; i++ {
		var out [32]byte
		if err := ecc.X25519(&out, &k, &u); err != nil {
			t.Fatal(err)
		}
		u, k = k, out
		switch i {
		case 1:
			if got := hex.EncodeToString(k[:]); got != "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079" {
				t.Errorf("after one iteration: %s", got)
			}
		case 1000:
			if got := hex.EncodeToString(k[:]); got != "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51" {
				t.Errorf("after 1,000 iterations: %s", got)
			}
		}
	}
}

// On random scalars and points, the patched functions agree with
// crypto/ecdh (and whatsmeow's and libsignal's callers get what they got
// from golang.org/x/crypto/curve25519).
func TestX25519AgreesWithCryptoECDH(t *testing.T) {
	for i := 0; i < 200; i++ {
		var scalar, point [32]byte
		rand.Read(scalar[:])
		rand.Read(point[:])
		want, err := stdX25519(t, scalar, point)
		if err != nil {
			continue // a random low-order point: practically never
		}
		var got [32]byte
		if err := ecc.X25519(&got, &scalar, &point); err != nil || !bytes.Equal(got[:], want) {
			t.Fatalf("X25519(%x, %x) = %x, %v; crypto/ecdh: %x", scalar, point, got, err, want)
		}
		if secret := kdf.CalculateSharedSecret(point, scalar); !bytes.Equal(secret[:], want) {
			t.Fatalf("kdf.CalculateSharedSecret(%x, %x) = %x; crypto/ecdh: %x", point, scalar, secret, want)
		}
		priv, err := ecdh.X25519().NewPrivateKey(scalar[:])
		if err != nil {
			t.Fatal(err)
		}
		var pub [32]byte
		ecc.ScalarBaseMult(&pub, &scalar)
		if !bytes.Equal(pub[:], priv.PublicKey().Bytes()) {
			t.Fatalf("ScalarBaseMult(%x) = %x; crypto/ecdh: %x", scalar, pub, priv.PublicKey().Bytes())
		}
	}
	// Two key pairs from libsignal agree on their shared secret.
	alice, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	bob, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	ab := kdf.CalculateSharedSecret(bob.PublicKey().PublicKey(), alice.PrivateKey().Serialize())
	ba := kdf.CalculateSharedSecret(alice.PublicKey().PublicKey(), bob.PrivateKey().Serialize())
	if ab != ba || ab == [32]byte{} {
		t.Fatalf("shared secrets differ or are zero: %x, %x", ab, ba)
	}
}

// A point of low order (libsodium's list, as golang.org/x/crypto tests
// it) is an error for X25519 and an all-zero secret for ScalarMult, as
// with golang.org/x/crypto/curve25519.
func TestX25519RefusesLowOrderPoints(t *testing.T) {
	var scalar [32]byte
	rand.Read(scalar[:])
	for _, p := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		point := unhex32(t, p)
		var out [32]byte
		if err := ecc.X25519(&out, &scalar, &point); !errors.Is(err, ecc.ErrLowOrderPoint) || out != [32]byte{} {
			t.Errorf("X25519 of low-order point %s = %x, %v; want zeros and ErrLowOrderPoint", p, out, err)
		}
		var legacy [32]byte
		curve25519.ScalarMult(&legacy, &scalar, &point)
		out = [32]byte{1}
		ecc.ScalarMult(&out, &scalar, &point)
		if out != legacy || out != [32]byte{} {
			t.Errorf("ScalarMult of low-order point %s = %x; golang.org/x/crypto: %x", p, out, legacy)
		}
	}
}

// BenchmarkX25519 prints what one shared secret and one public key cost,
// patched and through golang.org/x/crypto/curve25519:
//
//	go test -run '^$' -bench X25519 ./whatsapp/
func BenchmarkX25519(b *testing.B) {
	var scalar, point, out [32]byte
	rand.Read(scalar[:])
	rand.Read(point[:])
	b.Run("shared/libsignal-patched", func(b *testing.B) {
		for b.Loop() {
			_ = ecc.X25519(&out, &scalar, &point)
		}
	})
	b.Run("shared/x-crypto", func(b *testing.B) {
		for b.Loop() {
			_, _ = curve25519.X25519(scalar[:], point[:])
		}
	})
	b.Run("public-key/libsignal-patched", func(b *testing.B) {
		for b.Loop() {
			ecc.ScalarBaseMult(&out, &scalar)
		}
	})
	b.Run("public-key/x-crypto", func(b *testing.B) {
		for b.Loop() {
			curve25519.ScalarBaseMult(&out, &scalar)
		}
	})
}

// formatted records whether it was formatted.
type formatted struct{ called *bool }

func (f formatted) String() string { *f.called = true; return "formatted" }

// libsignal logs at debug level on every decryption, with keys and message
// bytes as arguments; its default logger drops those messages, and the
// patch no longer formats them for it first.
func TestLibsignalDebugMessagesAreNotFormatted(t *testing.T) {
	var called bool
	logger.Debug("Returning keypair: ", formatted{&called})
	if called {
		t.Error("logger.Debug formatted its arguments for the default logger, which drops them")
	}
}
