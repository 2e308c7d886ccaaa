package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// The two tests here check, deterministically and in process, what the
// restore phase of TestMassDisconnectReconnectsUnderTheRate measures on a
// busy machine: dials reach WhatsApp no faster than CONNECT_RATE, however
// long sessions wait for a slot or for their store to open. Both depend
// on where the rate token is taken: right before the dial, never before
// anything slow that precedes it (a wait for a slot, a store open).

// TestPacerStartsStayUnderTheRateWhileSlotsAreBusy: while every slot is
// busy, waiting sessions must not save up rate tokens and then dial
// together, in one burst, as slots free up.
func TestPacerStartsStayUnderTheRateWhileSlotsAreBusy(t *testing.T) {
	const (
		rate    = 100 // a token every 10 ms
		burst   = 1
		waiters = 20
	)
	p := actors.NewPacer(rate, burst, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	release, err := p.Slot(ctx) // one long dial holds the only slot
	if err != nil {
		t.Fatal(err)
	}
	var starts moments
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			rel, err := p.Slot(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			if err := p.Dial(ctx); err != nil {
				t.Error(err)
				rel()
				return
			}
			starts.add(time.Now())
			rel() // a dial that ends at once
		})
	}
	// Long enough for the waiters to take every token they want: a
	// sleep is the fault here (a slow dial), not a synchronisation.
	time.Sleep(waiters * time.Second / rate * 3 / 2)
	release()
	wg.Wait()
	worst, n, dt := burstiest(starts.since(0), rate)
	t.Logf("at worst %d starts within %v (%.1f above the rate)", n, dt, worst)
	if worst > burst+1 {
		t.Errorf("%d dials within %v, more than burst %d + rate %d/s allows (actors/pacer.go)", n, dt, burst, rate)
	}
}

// TestRestoreDialsStayUnderTheRateWhenStoresOpenSlowly: when opening
// stores is slow (a busy disk or CPU, quick_check on big stores), sessions
// that finish opening together must still dial WhatsApp at the rate, not
// together (actors/session.go dial takes the token right before Connect).
func TestRestoreDialsStayUnderTheRateWhenStoresOpenSlowly(t *testing.T) {
	const (
		n     = 30
		rate  = 100
		burst = 1
	)
	dir, err := store.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	for i := range n {
		if err := os.Mkdir(filepath.Join(dir.Root(), fmt.Sprintf("session-s%02d", i)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	opener := &slowOpener{gate: make(chan struct{})}
	mgr := e2e.Manager(t, actors.Options{
		Registry: dir, Opener: opener,
		Backoff:            actors.Backoff{Min: time.Second, Max: time.Second, Reset: time.Minute},
		RestoreConcurrency: n, ConnectRate: rate, ConnectBurst: burst,
		RestartBudget: 1, RestartWindow: time.Minute, RequestTimeout: 5 * time.Second,
	})
	ctx := context.Background()
	if err := mgr.Restore(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Every store takes this long to open: long enough for every session
	// to have taken its token (the fault is the slow disk, not a
	// synchronisation).
	time.Sleep(n * time.Second / rate * 3 / 2)
	lag := watchSchedulingLag()
	close(opener.gate)
	e2e.WaitFor(t, 10*time.Second, "every session connected", func() (bool, string) {
		fl, err := mgr.Fleet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fl.Counts[sessions.StateConnected] == n, fmt.Sprint(fl.Counts)
	})
	// Dials delayed alike by a loaded machine bunch by up to its
	// scheduling lag (capped: all n at once must still fail).
	slack := rate * min(100*time.Millisecond, lag()).Seconds()
	worst, k, dt := burstiest(opener.dials.since(0), rate)
	t.Logf("at worst %d dials within %v (%.1f above the rate; %.1f allowed)", k, dt, worst, burst+1+slack)
	if worst > burst+1+slack {
		t.Errorf("%d dials within %v, more than burst %d + rate %d/s allows (actors/session.go dial)", k, dt, burst, rate)
	}
}

// slowOpener opens stores that take until gate closes to open, and hands
// out clients that log in at once and record when they dialed.
type slowOpener struct {
	gate  chan struct{}
	dials moments
}

func (o *slowOpener) Open(ctx context.Context, id string, _ bool, emit func(whatsapp.Event)) (whatsapp.Client, error) {
	select {
	case <-o.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &instantClient{o: o, id: id, emit: emit}, nil
}

// instantClient is a paired client whose every Connect logs in at once.
type instantClient struct {
	o    *slowOpener
	id   string
	emit func(whatsapp.Event)
}

var _ whatsapp.Client = (*instantClient)(nil)

func (c *instantClient) Paired() bool { return true }
func (c *instantClient) JID() string  { return "1555" + c.id + ":1@s.whatsapp.net" }

func (c *instantClient) Connect(context.Context) error {
	c.o.dials.add(time.Now())
	c.emit(whatsapp.Connected{JID: "1555" + c.id + ":1@s.whatsapp.net"})
	return nil
}

func (c *instantClient) StartPairing(context.Context) error { return errors.New("paired") }
func (c *instantClient) PairPhone(context.Context, string) (string, error) {
	return "", errors.New("paired")
}
func (c *instantClient) Logout(context.Context) error { return nil }
func (c *instantClient) Close() error                 { return nil }
func (c *instantClient) Send(context.Context, whatsapp.Outgoing) (sessions.SentMessage, error) {
	return sessions.SentMessage{}, errors.New("not sending")
}
func (c *instantClient) MarkRead(context.Context, string, []string) error {
	return errors.New("not sending")
}

// TestPacerAfterAProcessStall: when the whole process stalls (a long GC, a
// starved CPU), sessions waiting for the rate must not all dial as it
// resumes. The pacer runs in a child process (this test binary, helper job
// "pace") that the test stops with SIGSTOP while its callers wait, then
// continues; the child reports when each Dial returned.
func TestPacerAfterAProcessStall(t *testing.T) {
	const (
		rate    = 100 // a token every 10 ms
		burst   = 1
		callers = 60 // 600 ms of tokens
		stall   = 400 * time.Millisecond
	)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=pace")
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`{"rate":%d,"burst":%d,"callers":%d}`, rate, burst, callers))
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// The child says "waiting" once every caller is in Dial.
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil || line != "waiting\n" {
		t.Fatalf("the pace helper said %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(stall) // the fault: the process does not run
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pace helper: %v", err)
	}
	var nanos []int64
	if err := json.Unmarshal(out.Bytes(), &nanos); err != nil || len(nanos) != callers {
		t.Fatalf("pace helper answered %d moments (%v), want %d", len(nanos), err, callers)
	}
	dials := make([]time.Time, len(nanos))
	for i, n := range nanos {
		dials[i] = time.Unix(0, n)
	}
	slices.SortFunc(dials, time.Time.Compare)
	worst, k, dt := burstiest(dials, rate)
	// Waiting together, every caller whose moment passed during the stall
	// dials as it ends: about rate × stall = 40 at once.
	t.Logf("at worst %d dials within %v (%.1f above the rate)", k, dt, worst)
	if limit := float64(burst + 3); worst > limit {
		t.Errorf("%d dials within %v after a %v stall: more than burst %d + rate %d/s allows (actors/pacer.go Dial)", k, dt, stall, burst, rate)
	}
}

// paceRequest is the "pace" helper job: callers wait in one Pacer's Dial
// at once; the answer is when each returned (Unix ns).
type paceRequest struct {
	Rate, Burst, Callers int
}

func pace(req paceRequest) ([]byte, error) {
	p := actors.NewPacer(float64(req.Rate), req.Burst, req.Callers)
	var (
		mu    sync.Mutex
		at    []int64
		ready sync.WaitGroup
		done  sync.WaitGroup
	)
	ready.Add(req.Callers)
	for range req.Callers {
		done.Go(func() {
			ready.Done()
			if err := p.Dial(context.Background()); err != nil {
				panic(err)
			}
			mu.Lock()
			at = append(at, time.Now().UnixNano())
			mu.Unlock()
		})
	}
	ready.Wait()
	fmt.Fprintln(os.Stderr, "waiting")
	done.Wait()
	return json.Marshal(at)
}
