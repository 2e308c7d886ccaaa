package fakeserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"google.golang.org/protobuf/proto"
)

const (
	// seedDevice is the device number SeedDevice gives every seeded device.
	seedDevice = 1
	// seedPreKeys is how many uploaded prekeys a seeded device holds:
	// enough that whatsmeow does not upload on login (it does below
	// MinPreKeyCount), few enough to keep seeding thousands of stores cheap.
	seedPreKeys = 2 * whatsmeow.MinPreKeyCount
)

// SeedDevice writes a paired device for user (a phone number) into
// container with whatsmeow's own sqlstore, as if it had been paired with a
// fake server earlier: Signal keys derived from user (so every fake server
// knows them without seeing them; seeding a user twice gives the same
// keys), ID user:1@s.whatsapp.net, the LID the server reports for it, an
// account identity signed by the user's phone, a push name, and a few
// prekeys marked uploaded (so its first login does not generate and upload
// 812 of them). Any fake server accepts its login. Benchmarks use it to
// create many stored sessions fast.
func SeedDevice(ctx context.Context, container *sqlstore.Container, user string) (*store.Device, error) {
	if user == "" || digitsOnly(user) != user {
		return nil, fmt.Errorf("seed device: %w: user must be a phone number", ErrInvalidArgument)
	}
	dev := container.NewDevice()
	// Keys the server derives too (seededKeys), so that contacts reach the
	// device without the server having seen it register.
	dev.IdentityKey, dev.SignedPreKey, dev.RegistrationID = seededKeys(user, seedDevice)
	identity, _, err := phoneSignedIdentity(user, seedDevice, dev.IdentityKey.Pub[:])
	if err != nil {
		return nil, fmt.Errorf("seed device: %w", err)
	}
	identity.DeviceSignature = deviceSignature(identity, dev.IdentityKey)
	jid := deviceJID(user, seedDevice)
	lid := deviceLID(user, seedDevice)
	dev.ID = &jid
	dev.LID = lid
	dev.Account = proto.Clone(identity).(*waAdv.ADVSignedDeviceIdentity)
	dev.Platform = phonePlatform
	dev.PushName = seedPushName(user)
	if err := dev.Save(ctx); err != nil {
		return nil, fmt.Errorf("seed device: save: %w", err)
	}

	// What whatsmeow stores after pairing and after its first prekey
	// upload, in one transaction: a commit per prekey would dominate.
	err = dev.EventBuffer.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		mainLID := lid
		mainLID.Device = 0
		if err := dev.Identities.PutIdentity(ctx, mainLID.SignalAddress().String(), [32]byte(identity.AccountSignatureKey)); err != nil {
			return fmt.Errorf("put phone identity: %w", err)
		}
		if err := dev.LIDs.PutLIDMapping(ctx, lid, jid); err != nil {
			return fmt.Errorf("put LID mapping: %w", err)
		}
		preKeys, err := dev.PreKeys.GetOrGenPreKeys(ctx, seedPreKeys)
		if err != nil {
			return fmt.Errorf("generate prekeys: %w", err)
		}
		if err := dev.PreKeys.MarkPreKeysAsUploaded(ctx, preKeys[len(preKeys)-1].KeyID); err != nil {
			return fmt.Errorf("mark prekeys uploaded: %w", err)
		}
		return nil
	})
	if err != nil {
		_ = dev.Delete(ctx)
		return nil, fmt.Errorf("seed device: %w", err)
	}
	return dev, nil
}

// seedPushName is the push name of a seeded device: "Test" and the last
// four digits of its number.
func seedPushName(user string) string {
	if len(user) > 4 {
		user = user[len(user)-4:]
	}
	return "Test " + user
}

// SeedFingerprint digests what SeedDevice derives from a phone number (the
// JID, the LID, the Signal keys and registration id, the push name; not
// the signed prekey's signature, which is randomized) for a reference
// number. It changes when the derivation does, and only then, so a
// program that keeps seeded stores (the bench's template) can tell that
// they no longer match what a fake server of this code expects.
func SeedFingerprint() string {
	const user = "15550000000"
	identity, signed, reg := seededKeys(user, seedDevice)
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d|%d|%s|", deviceJID(user, seedDevice), deviceLID(user, seedDevice), reg, signed.KeyID, seedPushName(user))
	h.Write(identity.Pub[:])
	h.Write(signed.Pub[:])
	return hex.EncodeToString(h.Sum(nil)[:8])
}
