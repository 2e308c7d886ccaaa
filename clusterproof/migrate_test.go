package clusterproof_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// TestMigrateThousandThenThreeNodes is the issue's proof "migration of
// 1,000 SQLite sessions into Postgres, then a 3-node start: all 1,000
// connected, device fingerprints unchanged". 1,000 stored sessions (as
// an earlier single-node run left them, seeded by `fakewa seed` outside
// the race detector) are copied by the service's migrate-store into the
// cluster's empty Postgres; then three nodes start on it. Every session
// comes up connected, spread over the three; the fake server saw each
// device log in, never twice at once; and each device's keys in Postgres
// (identity, noise, signed prekey, registration id, account signature,
// JID and LID) are the ones its SQLite store held.
func TestMigrateThousandThenThreeNodes(t *testing.T) {
	const n = 1000
	const prefix, userBase = "mig", "1555900"
	began := time.Now()
	dir := t.TempDir()
	runTool(t, fakeBin, "seed", "-dir", dir, "-n", fmt.Sprint(n), "-prefix", prefix, "-user-base", userBase)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	before := sqliteDevices(t, dir, ids)
	t.Logf("seeded and read %d SQLite stores in %v", n, time.Since(began).Round(time.Millisecond))

	c := e2e.StartCluster(t, e2e.ClusterOptions{Bin: serviceBin, FakeBin: fakeBin})
	began = time.Now()
	out := runTool(t, serviceBin, "migrate-store", "--from", dir, "--to", c.URL)
	if want := fmt.Sprintf("%d session(s): %d with a verified device, 0 without one, 0 failed", n, n); !bytes.Contains(out, []byte(want)) {
		t.Fatalf("migrate-store does not say %q:\n%s", want, out)
	}
	t.Logf("migrate-store copied %d sessions in %v", n, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	for range 3 {
		c.AddNode()
	}
	on := map[string]string{}
	e2e.WaitFor(t, 90*time.Second, fmt.Sprintf("all %d sessions connected on the 3 nodes", n), func() (bool, string) {
		f, err := fleet(c.Nodes[0])
		if err != nil {
			return false, err.Error()
		}
		clear(on)
		for _, st := range f.Sessions {
			if st.State == sessions.StateConnected && st.Node != "" {
				on[st.SenderID] = st.Node
			}
		}
		return len(f.Sessions) == n && len(on) == n, fmt.Sprintf("%d listed, %d connected: %v", len(f.Sessions), len(on), countBy(on))
	}, c.Nodes[0].Logs)
	per := countBy(on)
	t.Logf("all %d connected %v after the first node's start: %v", n, time.Since(began).Round(time.Millisecond), per)
	for _, node := range c.Nodes {
		if per[node.Name] == 0 {
			t.Errorf("%s hosts no session: %v", node.Name, per)
		}
	}

	rec := c.Record()
	for i, id := range ids {
		dev := fmt.Sprintf("%s%07d:1", userBase, i)
		if d := rec[dev]; d.Logins < 1 || d.Open != 1 {
			t.Errorf("%s: the fake server has %+v, want one open logged-in connection", id, d)
		}
	}
	c.CheckNeverTwice()

	after := postgresDevices(t, c.DB)
	for _, id := range ids {
		b := before[id]
		if got, ok := after[id]; !ok {
			t.Errorf("%s: no device in Postgres", id)
		} else if got != b {
			t.Errorf("%s: the device in Postgres differs from its SQLite store (%s)", id, diffKeys(b, got))
		}
	}
}

// runTool runs bin with args and returns its output; a failure fails the
// test.
func runTool(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), args[0], err, out)
	}
	return out
}

// deviceKeys is what identifies a paired device in whatsmeow's store:
// losing or changing any of it means pairing again. The public halves
// derive from the private keys, so comparing those compares the pairs.
type deviceKeys struct {
	JID, LID         string
	RegistrationID   uint32
	Noise, Identity  string // private keys
	SignedPreKey     string // private key
	SignedPreKeyID   uint32
	AdvSecret        string
	AccountSignature string
}

// diffKeys names the fields in which a and b differ (never their values:
// they are keys).
func diffKeys(a, b deviceKeys) string {
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{{"jid", a.JID == b.JID}, {"lid", a.LID == b.LID}, {"registration id", a.RegistrationID == b.RegistrationID},
		{"noise key", a.Noise == b.Noise}, {"identity key", a.Identity == b.Identity},
		{"signed prekey", a.SignedPreKey == b.SignedPreKey && a.SignedPreKeyID == b.SignedPreKeyID},
		{"adv secret", a.AdvSecret == b.AdvSecret}, {"account signature", a.AccountSignature == b.AccountSignature}} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return fmt.Sprint(out)
}

// deviceColumns are the columns of whatsmeow_device that deviceKeys
// holds, in its order, the same in SQLite and Postgres.
const deviceColumns = `jid, COALESCE(lid, ''), registration_id, noise_key, identity_key, signed_pre_key,
	signed_pre_key_id, adv_key, adv_account_sig`

// scanDevice reads one row of deviceColumns, after the columns that
// before are for.
func scanDevice(row interface{ Scan(...any) error }, before ...any) (deviceKeys, error) {
	var k deviceKeys
	var noise, identity, spk, adv, sig []byte
	err := row.Scan(append(before, &k.JID, &k.LID, &k.RegistrationID, &noise, &identity, &spk, &k.SignedPreKeyID, &adv, &sig)...)
	k.Noise, k.Identity, k.SignedPreKey, k.AdvSecret, k.AccountSignature = string(noise), string(identity), string(spk), string(adv), string(sig)
	if err == nil && (len(noise) != 32 || len(identity) != 32 || len(spk) != 32) {
		err = fmt.Errorf("a private key is not 32 bytes")
	}
	return k, err
}

// sqliteDevices reads the device of each of ids from its SQLite store
// under root, straight with SQL, four stores at a time.
func sqliteDevices(t *testing.T, root string, ids []string) map[string]deviceKeys {
	t.Helper()
	out := make(map[string]deviceKeys, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	for range 4 {
		wg.Go(func() {
			for id := range work {
				k, err := sqliteDevice(filepath.Join(root, "session-"+id, "whatsapp.db"))
				if err != nil {
					t.Errorf("%s: %v", id, err)
				}
				mu.Lock()
				out[id] = k
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	return out
}

func sqliteDevice(path string) (deviceKeys, error) {
	db, err := sql.Open(store.DriverName, store.DSN(path))
	if err != nil {
		return deviceKeys{}, err
	}
	defer db.Close()
	return scanDevice(db.QueryRow(`SELECT ` + deviceColumns + ` FROM whatsmeow_device`))
}

// postgresDevices reads every session's device from the shared database,
// by senderId (ws_sessions' device_jid).
func postgresDevices(t *testing.T, db *sql.DB) map[string]deviceKeys {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT s.sender_id, `+deviceColumns+`
		FROM ws_sessions s JOIN whatsmeow_device d ON d.jid = s.device_jid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]deviceKeys{}
	for rows.Next() {
		var id string
		k, err := scanDevice(rows, &id)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = k
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
