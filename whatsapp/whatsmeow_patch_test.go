package whatsapp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waCert"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/patchcheck"
)

// The whatsmeow the service builds with is third_party/whatsmeow: the
// pinned upstream version plus third_party/whatsmeow.patch. These tests
// fail when either side moves: go.mod requiring another version (the copy
// and the patch must be redone from it), the patched files changing, or
// the replace going away (the lean allocation is lost).

// patchedFiles are the files the patch changes, as patched.
var patchedFiles = map[string]string{
	"client.go":                    "822c66e41fbba75e3b76c6b7fe03d6f76db401108716e30e167e2ced200e68a9",
	"handshake.go":                 "d4bd142348428680fdb1f8354a83fc9bc28f1862f0b16cc630c294b4eba3c805",
	"go.mod":                       "4ee02ee927315acd8464f17a8b58ff4e86d3953842db7bc6ddb7e6a6edfa99d4",
	"recentmessages_patch_test.go": "1cc83c3a9549325149df30c472e37aeb93c7253ab8e9650aa3a7a31c442f44a4",
	"retry.go":                     "c491f90dd4d25f8bd033ebd09938bdfa5b8f0bbeb9eb2dbd3d7763621ed73337",
	"socket/framesocket.go":        "e33f2a804c63c9834cc39841771d03420e3856506113a6d0ab1d4e0c7e0a5c98",
	"socket/noisehandshake.go":     "8db5847c07b439f1e585f72558ef68ddae91999afd98e7e3d17aa0e9724cd597",
	"socket/noisesocket.go":        "6bae39bfa1f0ab2b901f0375904052c9bd48ecb51d698b4be5b902a456be6437",
	"util/keys/keypair.go":         "bd4831fccbd89191ec11bb42f6f8c8174888988c1f4e27f3c3a6a1a8f9c447fc",
}

// Both copies this package's tests guard: whatsmeow's, and libsignal's
// (libsignal_patch_test.go), whose X25519 whatsmeow's patch calls.
func TestPatchedCopiesAreThePinnedVersions(t *testing.T) {
	for _, c := range []patchcheck.Copy{
		{Module: "go.mau.fi/whatsmeow", Dir: "third_party/whatsmeow", Patch: "third_party/whatsmeow.patch", Files: patchedFiles},
		{Module: "go.mau.fi/libsignal", Dir: "third_party/libsignal", Patch: "third_party/libsignal.patch", Files: libsignalPatchedFiles},
	} {
		t.Run(c.Module, func(t *testing.T) { patchcheck.Check(t, "..", c) })
	}
}

// Unpatched, a client allocates ~63 KiB before it connects (the 256-entry
// recent-message map and array included); patched, well under half that.
func TestWhatsmeowClientIsLean(t *testing.T) {
	const n = 50
	dev := &store.Device{}
	clients := make([]*whatsmeow.Client, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range clients {
		clients[i] = whatsmeow.NewClient(dev, nil)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(clients)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("whatsmeow.NewClient allocates %d bytes", per)
	if per > 24<<10 {
		t.Errorf("whatsmeow.NewClient allocates %d bytes: is third_party/whatsmeow.patch applied?", per)
	}
}

// Unpatched, a client keeps each of its last 256 sent messages as a
// *waE2E.Message in a map beside a list (~1 KiB for a short text, ~300 KiB
// for the 256); patched, marshaled next to its id in one list entry, ~110
// bytes each.
func TestWhatsmeowKeepsSentMessagesSmall(t *testing.T) {
	const n, clients = 256, 8
	to := types.NewJID("1777", types.DefaultUserServer)
	keep := func(cli *whatsmeow.Client, i int) {
		msg := &waE2E.Message{Conversation: proto.String(fmt.Sprintf("message %d", i))}
		if err := cli.DangerousInternals().AddRecentMessage(context.Background(), to, types.MessageID(fmt.Sprintf("3EB0%012d", i)), msg, nil); err != nil {
			t.Fatal(err)
		}
	}
	keep(whatsmeow.NewClient(&store.Device{}, nil), 0) // protobuf's one-time set-up, outside the count
	clis := make([]*whatsmeow.Client, clients)
	for c := range clis {
		clis[c] = whatsmeow.NewClient(&store.Device{}, nil)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, cli := range clis {
		for i := range n {
			keep(cli, i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(clis)
	kept := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / clients
	t.Logf("%d sent messages kept in %d bytes", n, kept)
	if kept > 48<<10 {
		t.Errorf("%d sent messages kept in %d bytes: is third_party/whatsmeow.patch applied?", n, kept)
	}
}

// noLeaks checks, after the test and its clean-ups, that no goroutine it
// started is left.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// frameServer serves one websocket at a time, as WhatsApp's origin accepts
// it, and runs serve on each.
func frameServer(t *testing.T, serve func(context.Context, *websocket.Conn)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"web.whatsapp.com"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		serve(r.Context(), c)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// dialFrames connects a whatsmeow frame socket to srv.
func dialFrames(t *testing.T, srv *httptest.Server) *socket.FrameSocket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	fs := socket.NewFrameSocket(waLog.Noop, srv.Client())
	fs.URL = "ws" + strings.TrimPrefix(srv.URL, "http")
	if err := fs.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return fs
}

// waitForStacks polls until done reports true of every goroutine's stack.
func waitForStacks(t *testing.T, what string, done func(stacks string) bool) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); !done(string(buf[:runtime.Stack(buf, true)])); {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A frame socket closed while a frame waits for a reader that gave up (a
// handshake cut short, a noise socket stopped) lets its read pump go.
// Unpatched, the pump blocked on the send for ever, holding the socket.
func TestFrameSocketClosedWithAnUnreadFrameLeavesNoGoroutine(t *testing.T) {
	noLeaks(t)
	srv := frameServer(t, func(ctx context.Context, c *websocket.Conn) {
		frame := []byte{0, 0, 1, 'x'} // a 3-byte length, then one byte
		for range 2 {
			if c.Write(ctx, websocket.MessageBinary, frame) != nil {
				return
			}
		}
		_, _, _ = c.Read(ctx) // until the client goes
	})
	fs := dialFrames(t, srv)
	<-fs.Frames // the first frame is read; nobody reads the second
	waitForStacks(t, "the read pump never waited with the second frame", func(s string) bool {
		return strings.Contains(s, "socket.(*FrameSocket).frameComplete")
	})
	fs.Close(0)
}

// A noise socket stopped while the server drops the connection: the read
// pump's Close reads the disconnect callback that Stop clears. Unpatched,
// Stop wrote it without the frame socket's lock (a data race under -race).
func TestNoiseSocketStopWhileTheServerDropsTheSocket(t *testing.T) {
	noLeaks(t)
	drop := make(chan struct{})
	srv := frameServer(t, func(ctx context.Context, c *websocket.Conn) { <-drop })
	fs := dialFrames(t, srv)
	nh := socket.NewNoiseHandshake()
	nh.Start(socket.NoiseStartPattern, fs.Header)
	ns, err := nh.Finish(context.Background(), fs, func(context.Context, []byte) {}, func(context.Context, *socket.NoiseSocket, bool) {})
	if err != nil {
		t.Fatal(err)
	}
	close(drop)           // the server goes: the read pump closes the frame socket
	ns.Stop(false, false) // meanwhile the client stops the noise socket
	waitForStacks(t, "the frame socket never closed", func(s string) bool {
		return !fs.IsConnected() && !strings.Contains(s, "socket.(*FrameSocket).Close")
	})
}

// Nodes that find a connection's handler queue full wait in order and
// reach it in order, fed by one goroutine that ends once they are all in.
// Unpatched, each such node got a goroutine of its own and the order was
// lost (and the queue was 2,048 pointers, 16 KiB a connection, to make that
// rare).
func TestWhatsmeowKeepsNodeOrderBeyondTheQueue(t *testing.T) {
	noLeaks(t)
	cli := whatsmeow.NewClient(&store.Device{}, nil)
	queue := make(chan *waBinary.Node, 1)
	handle := cli.DangerousInternals().MakeFrameHandler(queue)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 300
	for i := range n {
		frame, err := waBinary.Marshal(waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{"id": strconv.Itoa(i)}})
		if err != nil {
			t.Fatal(err)
		}
		handle(ctx, frame) // as the frame reader does: never waits for the handlers
	}
	for i := range n {
		select {
		case node := <-queue:
			if id, _ := node.Attrs["id"].(string); id != strconv.Itoa(i) {
				t.Fatalf("node %d came out of the queue as node %s: is third_party/whatsmeow.patch applied?", i, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("node %d never reached the queue", i)
		}
	}
}

// A connect whose server never answers the Noise handshake ends when its
// context does. Unpatched, it waited NoiseHandshakeResponseTimeout (20 s)
// whatever the context, holding the client's socket lock, so a session
// stopped meanwhile waited as long in Disconnect (a stop answered 504).
func TestConnectEndsWithItsContextDuringTheHandshake(t *testing.T) {
	noLeaks(t)
	srv := frameServer(t, func(ctx context.Context, c *websocket.Conn) {
		for { // the client's hello, never answered, until the client goes
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	})
	cli := whatsmeow.NewClient(&store.Device{}, nil)
	cli.SetPreLoginHTTPClient(srv.Client())
	cli.MessengerConfig = &whatsmeow.MessengerConfig{BaseURL: "https://web.whatsapp.com", WebsocketURL: "ws" + strings.TrimPrefix(srv.URL, "http")}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := cli.ConnectContext(ctx)
	if took := time.Since(began); err == nil || took > 5*time.Second {
		t.Fatalf("ConnectContext with no handshake answer and a 300 ms context: %v after %v, want an error once the context ends", err, took)
	}
	cli.Disconnect() // must not wait either
}

// The Noise certificate chain a server presents is verified once per chain
// and root key, then remembered (the patch's verifiedCertChains); every
// check but the two signatures still runs on each handshake, and a chain
// is remembered only under the root it verified under.
func TestNoiseCertChainsAreRememberedOnlyOnceVerified(t *testing.T) {
	root, other, static := keys.NewKeyPair(), keys.NewKeyPair(), keys.NewKeyPair()
	now := time.Now()
	valid := noiseCertChain(t, root, static.Pub, now.Add(time.Hour))

	// The first time verifies the signatures; the second finds the chain
	// remembered. Both accept it.
	for i := range 2 {
		if err := whatsmeow.VerifyNoiseCertChain(*root.Pub, valid, static.Pub[:]); err != nil {
			t.Fatalf("a valid chain, verification %d: %v", i+1, err)
		}
	}
	// Remembered, it still has to vouch for the server's static key.
	if err := whatsmeow.VerifyNoiseCertChain(*root.Pub, valid, other.Pub[:]); err == nil || !strings.Contains(err.Error(), "doesn't match") {
		t.Errorf("a remembered chain for another static key = %v, want refused", err)
	}
	// It was verified under root, not under another root key.
	if err := whatsmeow.VerifyNoiseCertChain(*other.Pub, valid, static.Pub[:]); err == nil || !strings.Contains(err.Error(), "verify") {
		t.Errorf("a remembered chain under another root key = %v, want its signature refused", err)
	}
	// A chain whose leaf signature was tampered with is other bytes: it is
	// refused, every time (never remembered).
	tampered := tamperLeafSignature(t, valid)
	for i := range 2 {
		if err := whatsmeow.VerifyNoiseCertChain(*root.Pub, tampered, static.Pub[:]); err == nil || !strings.Contains(err.Error(), "verify") {
			t.Errorf("a tampered chain, verification %d = %v, want its signature refused", i+1, err)
		}
	}
	// Validity is checked on every handshake: an expired chain with good
	// signatures is refused the first time and the second.
	expired := noiseCertChain(t, root, static.Pub, now.Add(-time.Minute))
	for i := range 2 {
		if err := whatsmeow.VerifyNoiseCertChain(*root.Pub, expired, static.Pub[:]); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("an expired chain, verification %d = %v, want refused as expired", i+1, err)
		}
	}
}

// noiseCertChain is a marshaled certificate chain for a server's static
// key: an intermediate certificate signed by root, and a leaf for static
// signed by the intermediate, both valid until notAfter.
func noiseCertChain(t testing.TB, root *keys.KeyPair, static *[32]byte, notAfter time.Time) []byte {
	t.Helper()
	intermediate := keys.NewKeyPair()
	cert := func(issuer *keys.KeyPair, serial, issuerSerial uint32, key []byte) *waCert.CertChain_NoiseCertificate {
		details, err := proto.Marshal(&waCert.CertChain_NoiseCertificate_Details{
			Serial:       proto.Uint32(serial),
			IssuerSerial: proto.Uint32(issuerSerial),
			Key:          key,
			NotBefore:    proto.Uint64(uint64(time.Now().Add(-time.Hour).Unix())),
			NotAfter:     proto.Uint64(uint64(notAfter.Unix())),
		})
		if err != nil {
			t.Fatal(err)
		}
		sig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*issuer.Priv), details)
		return &waCert.CertChain_NoiseCertificate{Details: details, Signature: sig[:]}
	}
	chain, err := proto.Marshal(&waCert.CertChain{
		Intermediate: cert(root, 7, whatsmeow.WACertIssuerSerial, intermediate.Pub[:]),
		Leaf:         cert(intermediate, 8, 7, static[:]),
	})
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

// tamperLeafSignature is chain with one bit of its leaf's signature flipped.
func tamperLeafSignature(t testing.TB, chain []byte) []byte {
	t.Helper()
	var c waCert.CertChain
	if err := proto.Unmarshal(chain, &c); err != nil {
		t.Fatal(err)
	}
	c.Leaf.Signature[0] ^= 1
	out, err := proto.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkVerifyNoiseCertChain prints what a handshake's certificate
// check costs with a chain not seen before and with a remembered one:
//
//	go test -run '^$' -bench VerifyNoiseCertChain ./whatsapp
func BenchmarkVerifyNoiseCertChain(b *testing.B) {
	root, static := keys.NewKeyPair(), keys.NewKeyPair()
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			chain := noiseCertChain(b, root, static.Pub, time.Now().Add(time.Hour))
			b.StartTimer()
			if err := whatsmeow.VerifyNoiseCertChain(*root.Pub, chain, static.Pub[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("remembered", func(b *testing.B) {
		chain := noiseCertChain(b, root, static.Pub, time.Now().Add(time.Hour))
		for b.Loop() {
			if err := whatsmeow.VerifyNoiseCertChain(*root.Pub, chain, static.Pub[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
