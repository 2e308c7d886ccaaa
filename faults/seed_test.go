package faults_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// Seeding and reading stores is SQLite work (modernc's C translated to
// Go), which -race slows down about fifteen times: seeding a thousand
// stores takes a minute or more under -race and four seconds without.
// So TestMain also builds this package's test binary without -race, and
// the tests run seeding and snapshots in it, as a helper process (the
// request on stdin, the answer on stdout). Without that binary they run
// in process.

// helperEnv, set in a helper process's environment, names its job.
const helperEnv = "FAULTS_HELPER"

// helperBin is the race-free build of this package's tests, "" if it
// could not be built.
var helperBin string

// seedOptions tune seed.
type seedOptions struct {
	// prefix names the sessions seed makes: prefix0000, prefix0001, ...
	prefix string
	// userBase is the first phone number's prefix: userBase+"0000", ...
	userBase string
	// lowPreKeys is which sessions (by index) have no uploaded prekeys
	// left in their store, as after a long time without going online: the
	// first login of such a session generates and uploads a batch, which
	// is a write of about fifty rows.
	lowPreKeys func(i int) bool
}

// seedRequest is the job of a seeding helper.
type seedRequest struct {
	Root       string
	IDs        []string
	Users      []string
	LowPreKeys []bool
}

// snapshotRequest is the job of a snapshot helper.
type snapshotRequest struct {
	Root string
	IDs  []string
}

// seed writes n paired sessions into root (see seedIDs) and returns their
// ids: prefix0000, prefix0001, ...
func seed(t *testing.T, root string, n int, o seedOptions) []string {
	t.Helper()
	if o.prefix == "" {
		o.prefix = "user"
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%04d", o.prefix, i)
	}
	seedIDs(t, root, ids, o)
	return ids
}

// seedIDs writes a paired session for each of ids into root with
// whatsmeow's own sqlstore, as an earlier run of the service would have
// left them; the i-th gets the phone number userBase+"%04d".
func seedIDs(t *testing.T, root string, ids []string, o seedOptions) {
	t.Helper()
	if o.userBase == "" {
		o.userBase = "1555700"
	}
	req := seedRequest{Root: root, IDs: ids}
	for i := range ids {
		req.Users = append(req.Users, fmt.Sprintf("%s%04d", o.userBase, i))
		req.LowPreKeys = append(req.LowPreKeys, o.lowPreKeys != nil && o.lowPreKeys(i))
	}
	if err := callHelper("seed", req, nil); err != nil {
		t.Fatal(err)
	}
}

// snapshotDevices reads the device of each of ids from its store under
// root, with the service stopped (it takes the sessions directory's lock,
// so it fails while a service runs there).
func snapshotDevices(t *testing.T, root string, ids []string) map[string]deviceKeys {
	t.Helper()
	var out map[string]deviceKeys
	if err := callHelper("snapshot", snapshotRequest{Root: root, IDs: ids}, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// callHelper runs job with req in a helper process (in process without
// one) and decodes its answer into out.
func callHelper(job string, req, out any) error {
	in, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var answer []byte
	if helperBin == "" {
		answer, err = doJob(job, in)
	} else {
		cmd := exec.Command(helperBin)
		cmd.Env = append(os.Environ(), helperEnv+"="+job)
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		answer, err = cmd.Output()
		if err != nil {
			err = fmt.Errorf("%s helper: %w: %s", job, err, stderr.Bytes())
		}
	}
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(answer, out)
}

// runHelper is the whole of a helper process: the job named in its
// environment, the request on stdin, the answer on stdout.
func runHelper(job string) int {
	in, err := io.ReadAll(os.Stdin)
	if err == nil {
		var out []byte
		if out, err = doJob(job, in); err == nil {
			_, err = os.Stdout.Write(out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func doJob(job string, in []byte) ([]byte, error) {
	switch job {
	case "seed":
		var req seedRequest
		if err := json.Unmarshal(in, &req); err != nil {
			return nil, err
		}
		return nil, seedStores(req)
	case "snapshot":
		var req snapshotRequest
		if err := json.Unmarshal(in, &req); err != nil {
			return nil, err
		}
		keys, err := snapshotStores(req.Root, req.IDs)
		if err != nil {
			return nil, err
		}
		return json.Marshal(keys)
	case "pace":
		var req paceRequest
		if err := json.Unmarshal(in, &req); err != nil {
			return nil, err
		}
		return pace(req)
	}
	return nil, fmt.Errorf("unknown helper job %q", job)
}

// seedStores seeds req's sessions (fakeserver.SeedStores).
func seedStores(req seedRequest) error {
	seeds := make([]fakeserver.Seed, len(req.IDs))
	for i, id := range req.IDs {
		seeds[i] = fakeserver.Seed{ID: id, User: req.Users[i], LowPreKeys: req.LowPreKeys[i]}
	}
	return fakeserver.SeedStores(context.Background(), req.Root, seeds, fakeserver.SeedOptions{Workers: 8})
}

// deviceKeys is what identifies a paired device in its store: losing or
// changing any of it means pairing again.
type deviceKeys struct {
	Paired           bool
	JID, LID         string
	RegistrationID   uint32
	NoisePriv        [32]byte
	IdentityPriv     [32]byte
	SignedPreKeyID   uint32
	SignedPreKeyPriv [32]byte
	AdvSecret        string
	AccountSignature string
}

// snapshotStores reads the device of each of ids under root, with the
// sessions directory's lock held.
func snapshotStores(root string, ids []string) (map[string]deviceKeys, error) {
	dir, err := store.OpenDir(root)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer dir.Close()
	out := make(map[string]deviceKeys, len(ids))
	errs := make([]error, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				k, err := readDevice(dir, ids[i])
				errs[i] = err
				mu.Lock()
				out[ids[i]] = k
				mu.Unlock()
			}
		})
	}
	for i := range ids {
		work <- i
	}
	close(work)
	wg.Wait()
	return out, errors.Join(errs...)
}

// readDevice reads the device row of session id straight from its store
// with SQL, the columns sqlstore's GetFirstDevice reads (opening it
// through the store package would also run a quick_check of the whole
// file, which is not what is compared here).
func readDevice(dir *store.Dir, id string) (deviceKeys, error) {
	path, err := dir.SessionPath(id)
	if err != nil {
		return deviceKeys{}, err
	}
	db, err := sql.Open(store.DriverName, store.DSN(filepath.Join(path, "whatsapp.db")))
	if err != nil {
		return deviceKeys{}, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT jid, lid, registration_id, noise_key, identity_key, signed_pre_key,
		signed_pre_key_id, adv_key, adv_account_sig FROM whatsmeow_device`)
	if err != nil {
		return deviceKeys{}, fmt.Errorf("snapshot %s: %w", id, err)
	}
	defer rows.Close()
	var k deviceKeys
	for rows.Next() {
		if k.Paired {
			return deviceKeys{}, fmt.Errorf("snapshot %s: more than one device in the store", id)
		}
		var noise, identity, spk, adv, accountSig []byte
		var lid sql.NullString
		if err := rows.Scan(&k.JID, &lid, &k.RegistrationID, &noise, &identity, &spk, &k.SignedPreKeyID, &adv, &accountSig); err != nil {
			return deviceKeys{}, fmt.Errorf("snapshot %s: %w", id, err)
		}
		if len(noise) != 32 || len(identity) != 32 || len(spk) != 32 {
			return deviceKeys{}, fmt.Errorf("snapshot %s: a private key is not 32 bytes", id)
		}
		// The public halves derive from the private ones: comparing the
		// private keys compares the pairs.
		k.Paired, k.LID = true, lid.String
		k.NoisePriv, k.IdentityPriv, k.SignedPreKeyPriv = [32]byte(noise), [32]byte(identity), [32]byte(spk)
		k.AdvSecret, k.AccountSignature = string(adv), string(accountSig)
	}
	if err := rows.Err(); err != nil {
		return deviceKeys{}, fmt.Errorf("snapshot %s: %w", id, err)
	}
	return k, nil
}
