package webhooks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The specification's published test vector (the same in every one of
// its libraries' tests): key, message id, timestamp and payload give this
// signature.
func TestSignSpecVector(t *testing.T) {
	s, err := newSigner("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("signature %s, want the specification's %s", got, want)
	}
}

func TestCheckSecret(t *testing.T) {
	fresh, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		secret string
		ok     bool
	}{
		{fresh, true},
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false}, // no prefix
		{"whsec_not base64!!", false},               // not base64
		{"whsec_c2hvcnQ=", false},                   // 5 bytes
	} {
		err := CheckSecret(tt.secret)
		if (err == nil) != tt.ok {
			t.Errorf("CheckSecret(%.12s...) = %v, want ok=%v", tt.secret, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimPrefix(tt.secret, SecretPrefix)) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/whatsapp", true},
		{"http://10.0.0.1:8080/x?token=abc", true}, // the address is checked when connecting
		{"ftp://example.com/", false},
		{"example.com/hook", false},
		{"https:///nohost", false},
		{"https://user:pass@example.com/", false},
		{"https://example.com/#frag", false},
		{"https://exa mple.com/", false},
	} {
		if err := CheckURL(tt.url); (err == nil) != tt.ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
	if got := redact("https://h.example/p?token=secret"); got != "https://h.example/p" {
		t.Errorf("redact = %q", got)
	}
}

func TestRefusePrivate(t *testing.T) {
	for _, tt := range []struct {
		addr string
		kind string // "" when allowed
	}{
		{"127.0.0.1", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"192.168.1.1", "private"},
		{"fd12::1", "private"},
		{"169.254.169.254", "metadata"},
		{"fd00:ec2::254", "metadata"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"100.64.0.1", "reserved or shared"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"64:ff9b::a00:1", "reserved or shared"},
		{"8.8.8.8", ""},
		{"2001:4860:4860::8888", ""},
		{"93.184.216.34", ""},
	} {
		err := refusePrivate("tcp", netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 443).String(), nil)
		switch {
		case tt.kind == "" && err != nil:
			t.Errorf("%s refused: %v", tt.addr, err)
		case tt.kind != "" && (err == nil || !strings.Contains(err.Error(), tt.kind) || !strings.Contains(err.Error(), "WEBHOOK_ALLOW_PRIVATE")):
			t.Errorf("%s: %v, want refused as %s", tt.addr, err, tt.kind)
		}
	}
}

func TestBackoff(t *testing.T) {
	for attempts := 1; attempts <= 40; attempts++ {
		full := min(time.Second<<min(attempts-1, 20), time.Hour)
		for range 50 {
			d := Backoff(attempts)
			if d < full/2 || d > full {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", attempts, d, full/2, full)
			}
		}
	}
	if Backoff(30) < 30*time.Minute {
		t.Error("the backoff does not reach the hour cap")
	}
}

func TestErrClosedIsShuttingDown(t *testing.T) {
	if !errors.Is(ErrClosed, sessions.ErrShuttingDown) {
		t.Error("ErrClosed does not wrap sessions.ErrShuttingDown (the API's 503)")
	}
}

// A burst opens reader connections beside the writer's; once unused for
// readerIdleTimeout they close (their SQLite memory with them). The
// writer's connection goes back to the pool once it committed nothing for
// writerIdleTimeout, and closes like a reader's. The outbox reads and
// commits afterwards on connections opened anew, and what it committed
// before and after is all in the file (nothing lost).
func TestIdleConnectionsClose(t *testing.T) {
	defer func(r, w time.Duration) { readerIdleTimeout, writerIdleTimeout = r, w }(readerIdleTimeout, writerIdleTimeout)
	readerIdleTimeout, writerIdleTimeout = 100*time.Millisecond, 100*time.Millisecond
	o, ctx := openTempOutbox(t)
	publish := func(id string) {
		t.Helper()
		done := make(chan error, 1)
		o.Publish([]sessions.Event{{ID: id, Type: sessions.EventSessionState, SenderID: "s1", Timestamp: time.Now()}}, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
	waitOpen := func(want int, what string) {
		t.Helper()
		for o.db.Stats().OpenConnections > want {
			if ctx.Err() != nil {
				t.Fatalf("%d connections still open, want %d (%s)", o.db.Stats().OpenConnections, want, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	publish("ev1") // the writer takes its connection
	var conns []*sql.Conn
	for range 5 { // held at once, so the pool opens 5 readers
		c, err := o.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if n := o.db.Stats().OpenConnections; n < 5 {
		t.Fatalf("%d connections open with 5 readers held, want at least 5", n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitOpen(0, "the readers and the idle writer")
	var events int
	if err := o.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil || events != 1 {
		t.Fatalf("read after the connections closed: %d events, %v; want 1", events, err)
	}
	publish("ev2") // the writer takes a connection again
	waitOpen(0, "the writer idle again")
	if err := o.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil || events != 2 {
		t.Fatalf("%d events, %v; want 2", events, err)
	}
}

// The SQLite outbox prepares its busiest statements when it opens and
// runs them prepared from then on, a transaction binding each once;
// events committed and the queue read through them are all there (nothing
// lost). The queue reads bind no LIMIT, which SQLite plans with, so that
// binding does not expire them. Without a cache (Postgres) statements run
// as text.
func TestOutboxStatementsArePreparedOnce(t *testing.T) {
	o, ctx := openTempOutbox(t)
	for _, q := range []string{o.q.insertEvent, o.q.insertDelivery, o.q.mark, o.q.next, o.q.nextSkip} {
		if strings.Contains(q, "LIMIT ?") {
			t.Errorf("%q binds its LIMIT", q)
		}
		if o.stmts.stmt(q) == nil {
			t.Errorf("not prepared at open: %q", q)
		}
	}

	const n = 50
	done := make(chan error, n)
	for i := range n {
		ev := sessions.Event{ID: fmt.Sprintf("ev%03d", i), Type: sessions.EventSessionState, SenderID: "s1", Timestamp: time.Now()}
		o.Publish([]sessions.Event{ev}, func(err error) { done <- err })
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	var events int
	if err := o.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&events); err != nil || events != n {
		t.Fatalf("%d events in the file (%v), want %d", events, err, n)
	}
	rows, err := o.stmts.query(ctx, o.db, o.q.next, o.node, "https://example.com/hook", "s1")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()

	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	st := o.stmts.in(ctx, tx)
	if a, b := st.get(o.q.mark), st.get(o.q.mark); a == nil || a != b {
		t.Errorf("a transaction bound one statement twice (%p, %p)", a, b)
	}
	if plain := (*stmtCache)(nil).in(ctx, tx); plain.get(o.q.mark) != nil {
		t.Error("without a cache, statements should run as text")
	}
}

// openTempOutbox opens a SQLite outbox in a temporary directory, closed
// at the test's end, and a context for its queries that ends in 10 s.
func openTempOutbox(t *testing.T) (*Outbox, context.Context) {
	t.Helper()
	o, err := Open(Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return o, ctx
}
