// whatsapp-sessions patch (third_party/libsignal.patch): X25519 without the
// extra scalar multiplications golang.org/x/crypto/curve25519 does.

package ecc

import (
	"crypto/subtle"
	"errors"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// ErrLowOrderPoint is X25519's error for a point of low order: the shared
// secret would be all zeros.
var ErrLowOrderPoint = errors.New("x25519: low order point")

var zero [32]byte

// X25519 sets dst to the X25519 function of scalar and point (RFC 7748,
// section 5): a Diffie-Hellman shared secret. It returns ErrLowOrderPoint,
// with dst all zeros, when point has low order.
//
// golang.org/x/crypto/curve25519 computes it through crypto/ecdh, whose
// NewPrivateKey also derives the scalar's public key: two scalar
// multiplications where one is needed. This is the same Montgomery ladder
// as crypto/ecdh's, on filippo.io/edwards25519's field arithmetic.
func X25519(dst, scalar, point *[32]byte) error {
	x25519Ladder(dst, scalar, point)
	if subtle.ConstantTimeCompare(dst[:], zero[:]) == 1 {
		return ErrLowOrderPoint
	}
	return nil
}

// ScalarMult is X25519 with golang.org/x/crypto/curve25519.ScalarMult's
// signature: dst is all zeros when point has low order.
func ScalarMult(dst, scalar, point *[32]byte) {
	x25519Ladder(dst, scalar, point)
}

// ScalarBaseMult sets dst to the public key of the private key scalar, the
// X25519 function of scalar and the base point 9. It multiplies the
// Edwards form's base point, which has precomputed tables, and maps the
// result to the Montgomery form: ~2.5 times faster than the ladder.
func ScalarBaseMult(dst, scalar *[32]byte) {
	s, err := edwards25519.NewScalar().SetBytesWithClamping(scalar[:])
	if err != nil {
		panic("ecc: " + err.Error()) // only for a length other than 32
	}
	copy(dst[:], new(edwards25519.Point).ScalarBaseMult(s).BytesMontgomery())
}

// x25519Ladder is crypto/ecdh's x25519ScalarMult (Go 1.26,
// crypto/ecdh/x25519.go): RFC 7748's constant-time
// Montgomery ladder, with the scalar clamped and the point's top bit
// ignored. A low-order point gives zeros (the inverse of zero is zero).
func x25519Ladder(dst, scalar, point *[32]byte) {
	var e [32]byte
	copy(e[:], scalar[:])
	e[0] &= 248
	e[31] &= 127
	e[31] |= 64

	var x1, x2, z2, x3, z3, tmp0, tmp1 field.Element
	if _, err := x1.SetBytes(point[:]); err != nil {
		panic("ecc: " + err.Error()) // only for a length other than 32
	}
	x2.One()
	x3.Set(&x1)
	z3.One()

	swap := 0
	for pos := 254; pos >= 0; pos-- {
		b := e[pos/8] >> uint(pos&7)
		b &= 1
		swap ^= int(b)
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = int(b)

		tmp0.Subtract(&x3, &z3)
		tmp1.Subtract(&x2, &z2)
		x2.Add(&x2, &z2)
		z2.Add(&x3, &z3)
		z3.Multiply(&tmp0, &x2)
		z2.Multiply(&z2, &tmp1)
		tmp0.Square(&tmp1)
		tmp1.Square(&x2)
		x3.Add(&z3, &z2)
		z2.Subtract(&z3, &z2)
		x2.Multiply(&tmp1, &tmp0)
		tmp1.Subtract(&tmp1, &tmp0)
		z2.Square(&z2)

		z3.Mult32(&tmp1, 121666)
		x3.Square(&x3)
		tmp0.Add(&tmp0, &z3)
		z3.Multiply(&x1, &z2)
		z2.Multiply(&tmp1, &tmp0)
	}

	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)

	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(dst[:], x2.Bytes())
}
