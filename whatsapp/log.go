package whatsapp

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"

	waLog "go.mau.fi/whatsmeow/util/log"
)

// longNumber matches phone numbers and JID users: whatsmeow puts them in
// its log lines, and personal data stays out of ours.
var longNumber = regexp.MustCompile(`\d{7,}`)

// nameAttr matches the attributes of the stanzas whatsmeow puts in some
// warnings ("Node handling took ... for <message ... notify=...>") that
// carry a person's display name.
var nameAttr = regexp.MustCompile(`\b(notify|name|verified_name|pushname)="[^"]*"`)

// Logger adapts an slog.Logger to whatsmeow's logger. whatsmeow's info and
// debug lines become debug (they are chatty); warnings and errors keep
// their level. Digit runs that could be phone numbers, and display names
// in stanzas, are redacted.
func Logger(l *slog.Logger, module string) waLog.Logger {
	return &logAdapter{l: l.With("module", module)}
}

type logAdapter struct{ l *slog.Logger }

func (a *logAdapter) log(level slog.Level, format string, args ...any) {
	if !a.l.Enabled(context.Background(), level) {
		return
	}
	msg := nameAttr.ReplaceAllString(fmt.Sprintf(format, args...), `$1="[redacted]"`)
	msg = longNumber.ReplaceAllString(msg, "[redacted]")
	a.l.Log(context.Background(), level, msg)
}

func (a *logAdapter) Warnf(f string, args ...any)  { a.log(slog.LevelWarn, f, args...) }
func (a *logAdapter) Errorf(f string, args ...any) { a.log(slog.LevelError, f, args...) }
func (a *logAdapter) Infof(f string, args ...any)  { a.log(slog.LevelDebug, f, args...) }
func (a *logAdapter) Debugf(f string, args ...any) { a.log(slog.LevelDebug-4, f, args...) }
func (a *logAdapter) Sub(module string) waLog.Logger {
	return &logAdapter{l: a.l.With("sub", module)}
}
