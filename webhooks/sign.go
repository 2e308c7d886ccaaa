package webhooks

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// SecretPrefix starts every signing secret, as Standard Webhooks writes
// them.
const SecretPrefix = "whsec_"

// minSecretBytes is the shortest key the specification allows (24 bytes).
const minSecretBytes = 24

// CheckSecret says why secret cannot sign deliveries, or returns nil. The
// reason never shows the secret.
func CheckSecret(secret string) error {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return errors.New("must start with " + SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return errors.New("must be " + SecretPrefix + " followed by standard base64")
	}
	if len(key) < minSecretBytes {
		return fmt.Errorf("holds %d bytes, fewer than the %d the Standard Webhooks specification asks for", len(key), minSecretBytes)
	}
	return nil
}

// NewSecret is a new random signing secret (32 bytes).
func NewSecret() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// signer signs deliveries with the Standard Webhooks Go library.
type signer struct{ wh *standardwebhooks.Webhook }

func newSigner(secret string) (*signer, error) {
	if err := CheckSecret(secret); err != nil {
		return nil, fmt.Errorf("webhook secret %v", err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, errors.New("webhook secret is not valid base64")
	}
	return &signer{wh: wh}, nil
}

// sign is the webhook-signature header of body, sent as message id at ts:
// "v1," and the base64 HMAC-SHA256 of "id.ts.body".
func (s *signer) sign(id string, ts time.Time, body []byte) string {
	sig, _ := s.wh.Sign(id, ts, body) // the library's Sign never fails
	return sig
}
