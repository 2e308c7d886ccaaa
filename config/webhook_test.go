package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

func TestWebhookDefaults(t *testing.T) {
	c, err := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookURLs() != nil || c.WebhookTimeout != 10*time.Second || c.WebhookRetryFor != 72*time.Hour ||
		c.WebhookKeep != 24*time.Hour || c.WebhookAllowPrivate || c.WebhookSecret != "" {
		t.Errorf("webhook defaults: %+v", c)
	}
	if types, err := c.WebhookEventTypes(); err != nil || !slices.Equal(types, sessions.EventTypes) {
		t.Errorf("default event types %v, %v; want all", types, err)
	}
}

func TestWebhookValues(t *testing.T) {
	c, err := loadWith(t, map[string]string{
		"WEBHOOK_URL":           " https://a.example/hook , http://b.example:8080/x?token=t ,",
		"WEBHOOK_EVENTS":        "message.received, message.ack",
		"WEBHOOK_SECRET":        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"WEBHOOK_TIMEOUT":       "3s",
		"WEBHOOK_ALLOW_PRIVATE": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.WebhookURLs(); !slices.Equal(got, []string{"https://a.example/hook", "http://b.example:8080/x?token=t"}) {
		t.Errorf("urls %q", got)
	}
	types, _ := c.WebhookEventTypes()
	if !slices.Equal(types, []sessions.EventType{sessions.EventMessageReceived, sessions.EventMessageAck}) {
		t.Errorf("types %v", types)
	}
	if c.WebhookTimeout != 3*time.Second || !c.WebhookAllowPrivate {
		t.Errorf("%+v", c)
	}
}

// Every bad webhook setting is reported at once, each in a sentence, and
// no message shows the secret or a URL's token.
func TestWebhookBadValues(t *testing.T) {
	const secret = "whsec_c2hvcnQtc2VjcmV0"
	_, err := loadWith(t, map[string]string{
		"WEBHOOK_URL":       "https://ok.example/,ftp://files.example/?token=tok123,https://u:pw@x.example/,https://ok.example/",
		"WEBHOOK_EVENTS":    "message.received,message.sent",
		"WEBHOOK_SECRET":    secret,
		"WEBHOOK_TIMEOUT":   "0s",
		"WEBHOOK_RETRY_FOR": "-1h",
		"WEBHOOK_KEEP":      "0s",
	})
	if err == nil {
		t.Fatal("bad webhook settings accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"WEBHOOK_URL's URL number 2 must start with http:// or https://",
		"WEBHOOK_URL's URL number 3 must not carry a user or password",
		"WEBHOOK_URL's URL number 4 repeats number 1",
		`WEBHOOK_EVENTS names "message.sent", which is not an event type`,
		"WEBHOOK_SECRET holds 12 bytes",
		"WEBHOOK_TIMEOUT must be positive", "WEBHOOK_RETRY_FOR must be positive", "WEBHOOK_KEEP must be positive",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	for _, leak := range []string{"c2hvcnQtc2VjcmV0", "tok123", "pw@"} {
		if strings.Contains(msg, leak) {
			t.Errorf("error shows %q:\n%s", leak, msg)
		}
	}
}
