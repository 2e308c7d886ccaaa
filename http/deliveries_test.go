package http_test

import (
	"slices"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The Delivery schema's enums are the sessions package's lists.
func TestOpenAPIDeliveryEnums(t *testing.T) {
	doc := loadDoc(t)
	props := schema(t, doc, "Delivery")["properties"].(map[string]any)
	enum := func(name string) []string {
		var out []string
		for _, v := range props[name].(map[string]any)["enum"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got, want := enum("eventType"), strs(sessions.EventTypes); !slices.Equal(got, want) {
		t.Errorf("Delivery.eventType enum %v, want sessions.EventTypes %v", got, want)
	}
	states := []sessions.DeliveryState{sessions.DeliveryPending, sessions.DeliveryFailed, sessions.DeliveryDead, sessions.DeliveryDelivered}
	if got, want := enum("state"), strs(states); !slices.Equal(got, want) {
		t.Errorf("Delivery.state enum %v, want %v", got, want)
	}
}
