package whatsapp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// whatsmeow's warnings may dump a whole stanza: the sender's number and
// display name (notify) must not reach the log.
func TestLoggerRedactsNumbersAndNames(t *testing.T) {
	var buf bytes.Buffer
	l := Logger(slog.New(slog.NewJSONHandler(&buf, nil)), "whatsmeow")
	l.Warnf("Node handling took %s for %s", "10.5s",
		`<message from="4915112345678@s.whatsapp.net" id="3A71" notify="Erika Mustermann" type="text"><enc type="msg" v="2">33</enc></message>`)
	l.Warnf("business %s", `<profile verified_name="Mustermann GmbH" name="Erika"/>`)
	out := buf.String()
	for _, personal := range []string{"4915112345678", "Erika", "Mustermann"} {
		if strings.Contains(out, personal) {
			t.Errorf("the log holds %q: %s", personal, out)
		}
	}
	for _, kept := range []string{`id=\"3A71\"`, `notify=\"[redacted]\"`, "Node handling took"} {
		if !strings.Contains(out, kept) {
			t.Errorf("the log lost %s: %s", kept, out)
		}
	}
}
