// Package migrate copies the SQLite session stores of a sessions directory
// into Postgres (whatsapp-sessions migrate-store): for each session its
// ws_sessions row (the stop marker kept) and every whatsmeow row of its
// device, table by table in one transaction, ON CONFLICT DO NOTHING so that
// a second run changes nothing. Then it verifies each device by loading it
// from Postgres through whatsmeow and comparing its fingerprint (JID,
// registration id, noise, identity and signed prekeys) and the rows per
// table with the SQLite store's. The SQLite files are only read.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"

	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// Result is what happened to one session.
type Result struct {
	ID string
	// Paired is whether the store held a paired device.
	Paired bool
	// Copied is the rows this run inserted; Rows the device's rows in
	// Postgres after it (equal to the SQLite store's when verified).
	Copied, Rows int
	// Err is why the session failed; nil when it is in Postgres and
	// verified.
	Err error
}

// Summary counts the results of a run.
type Summary struct {
	Sessions, Paired, Failed int
	// Copied is the rows inserted; zero on a second run.
	Copied int
}

// Run migrates every session of the sessions directory from into the
// (migrated) database db, printing a line per session and a summary to
// out. It takes the directory's lock, so the service must not be running
// on it. Its error means the run could not proceed; failed sessions are in
// the summary (Failed), not the error.
func Run(ctx context.Context, from string, db *sql.DB, out io.Writer) (Summary, error) {
	var sum Summary
	if fi, err := os.Stat(from); err != nil || !fi.IsDir() {
		return sum, fmt.Errorf("--from %s: not a sessions directory", from)
	}
	dir, err := store.OpenDir(from)
	if err != nil {
		return sum, err
	}
	defer dir.Close()
	stored, err := dir.Discover()
	if err != nil {
		return sum, err
	}
	if _, err := pgstore.Migrate(ctx, db); err != nil {
		return sum, err
	}
	devices, err := pgstore.NewDevices(ctx, db, nil)
	if err != nil {
		return sum, err
	}
	m := &migrator{db: db, container: devices.Container()}
	for _, s := range stored {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		path, _ := dir.SessionPath(s.ID) // Discover lists valid ids only
		r := m.session(ctx, s, filepath.Join(path, "whatsapp.db"))
		sum.Sessions++
		sum.Copied += r.Copied
		switch {
		case r.Err != nil:
			sum.Failed++
			fmt.Fprintf(out, "FAIL %s: %v\n", r.ID, r.Err)
		case r.Paired:
			sum.Paired++
			fmt.Fprintf(out, "ok   %s: device verified, %d rows (%d copied now)\n", r.ID, r.Rows, r.Copied)
		default:
			fmt.Fprintf(out, "ok   %s: no paired device (needs pairing), session recorded\n", r.ID)
		}
	}
	fmt.Fprintf(out, "%d session(s): %d with a verified device, %d without one, %d failed; %d rows copied\n",
		sum.Sessions, sum.Paired, sum.Sessions-sum.Paired-sum.Failed, sum.Failed, sum.Copied)
	return sum, nil
}

// migrator copies sessions into one database.
type migrator struct {
	db        *sql.DB
	container *sqlstore.Container
}

// session migrates and verifies one session whose store is at path.
func (m *migrator) session(ctx context.Context, s store.Stored, path string) Result {
	r := Result{ID: s.ID}
	src, err := openReadOnly(path)
	if errors.Is(err, fs.ErrNotExist) {
		// A session without a store: recorded, to be paired again.
		r.Err = m.record(ctx, s, "")
		return r
	}
	if err != nil {
		r.Err = err
		return r
	}
	defer src.Close()
	dev, err := sqlstore.NewWithDB(src, store.DriverName, nil).GetFirstDevice(ctx)
	if err != nil {
		r.Err = fmt.Errorf("read the SQLite store: %w", err)
		return r
	}
	if dev.ID == nil {
		r.Err = m.record(ctx, s, "")
		return r
	}
	r.Paired = true
	jid := dev.ID.String()
	if r.Copied, err = m.copy(ctx, src, s, jid); err != nil {
		r.Err = err
		return r
	}
	r.Rows, r.Err = m.verify(ctx, src, dev)
	return r
}

// record inserts the session's row (with its device jid, "" for none). A
// row already there with another device is an error: the session was
// paired again on Postgres, and copying would mix two devices.
func (m *migrator) record(ctx context.Context, s store.Stored, jid string) error {
	return m.inTx(ctx, func(tx *sql.Tx) error { return recordTx(ctx, tx, s, jid) })
}

func recordTx(ctx context.Context, tx *sql.Tx, s store.Stored, jid string) error {
	dj := sql.NullString{String: jid, Valid: jid != ""}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ws_sessions (sender_id, device_jid, stopped) VALUES ($1, $2, $3)
		ON CONFLICT (sender_id) DO NOTHING`, s.ID, dj, s.Stopped); err != nil {
		return fmt.Errorf("record the session: %w", err)
	}
	var have sql.NullString
	if err := tx.QueryRowContext(ctx, "SELECT device_jid FROM ws_sessions WHERE sender_id = $1", s.ID).Scan(&have); err != nil {
		return fmt.Errorf("record the session: %w", err)
	}
	if have != dj {
		return errors.New("the session is already in Postgres with another device (or none): left as it is")
	}
	return nil
}

func (m *migrator) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// openReadOnly opens the SQLite store at path read-only (fs.ErrNotExist
// when there is none). Read-only still reads the WAL, so what a crash left
// there is copied too.
func openReadOnly(path string) (*sql.DB, error) {
	if _, err := os.Lstat(path); err != nil {
		return nil, err
	}
	db, err := sql.Open(store.DriverName, "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("open the SQLite store: %w", err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// table is one whatsmeow table to copy: its per-device column ("" for the
// LID map, which every device shares) and the columns both databases have,
// with their Postgres types.
type table struct {
	name   string
	device string
	cols   []string
	types  []string
}

// tables lists the whatsmeow tables of the SQLite store src, in an order
// that inserts parents first.
func (m *migrator) tables(ctx context.Context, src *sql.DB) ([]table, error) {
	names, err := column[string](ctx, src, `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'whatsmeow\_%' ESCAPE '\' AND name <> 'whatsmeow_version'`)
	if err != nil {
		return nil, fmt.Errorf("list the SQLite store's tables: %w", err)
	}
	rank := func(n string) int {
		switch n {
		case "whatsmeow_device":
			return 0
		case "whatsmeow_app_state_version":
			return 1
		}
		return 2
	}
	slices.SortFunc(names, func(a, b string) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var out []table
	for _, n := range names {
		rows, err := m.db.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, n)
		if err != nil {
			return nil, err
		}
		pg := map[string]string{}
		var order []string
		for rows.Next() {
			var c, t string
			if err := rows.Scan(&c, &t); err != nil {
				rows.Close()
				return nil, err
			}
			pg[c] = t
			order = append(order, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(order) == 0 {
			return nil, fmt.Errorf("table %s of the SQLite store is not in Postgres: this program's whatsmeow is older than the store's", n)
		}
		srcCols, err := column[string](ctx, src, "SELECT name FROM pragma_table_info(?)", n)
		if err != nil {
			return nil, err
		}
		t := table{name: n}
		for _, c := range order {
			if slices.Contains(srcCols, c) {
				t.cols, t.types = append(t.cols, c), append(t.types, pg[c])
			}
		}
		switch {
		case n == "whatsmeow_device":
			t.device = "jid"
		case slices.Contains(t.cols, "our_jid"):
			t.device = "our_jid"
		case slices.Contains(t.cols, "jid"):
			t.device = "jid"
		}
		out = append(out, t)
	}
	return out, nil
}

// column reads a query's one column.
func column[T any](ctx context.Context, db *sql.DB, q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// batchRows bounds the rows of one INSERT (Postgres allows 65,535
// parameters in a statement).
const batchRows = 500

// copy inserts the session's row and its device's rows, in one
// transaction, and returns how many rows it inserted.
func (m *migrator) copy(ctx context.Context, src *sql.DB, s store.Stored, jid string) (int, error) {
	tables, err := m.tables(ctx, src)
	if err != nil {
		return 0, err
	}
	copied := 0
	err = m.inTx(ctx, func(tx *sql.Tx) error {
		copied = 0
		for _, t := range tables {
			n, err := copyTable(ctx, src, tx, t, jid)
			if err != nil {
				return fmt.Errorf("copy %s: %w", t.name, err)
			}
			copied += n
		}
		// Last: the row names a device that is now there.
		return recordTx(ctx, tx, s, jid)
	})
	return copied, err
}

// copyTable copies table t's rows of device jid (all of the LID map's).
func copyTable(ctx context.Context, src *sql.DB, tx *sql.Tx, t table, jid string) (int, error) {
	q := "SELECT " + quoteAll(t.cols) + " FROM " + quote(t.name)
	var args []any
	if t.device != "" {
		q += " WHERE " + quote(t.device) + " = ?"
		args = append(args, jid)
	}
	rows, err := src.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	copied := 0
	var batch []any
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + quote(t.name) + " (" + quoteAll(t.cols) + ") VALUES ")
		for i := range n {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(")
			for j := range t.cols {
				if j > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("$" + strconv.Itoa(i*len(t.cols)+j+1))
			}
			sb.WriteString(")")
		}
		sb.WriteString(" ON CONFLICT DO NOTHING")
		res, err := tx.ExecContext(ctx, sb.String(), batch...)
		if err != nil {
			return err
		}
		k, _ := res.RowsAffected()
		copied += int(k)
		batch, n = batch[:0], 0
		return nil
	}
	for rows.Next() {
		vals := make([]any, len(t.cols))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return 0, err
		}
		for i, v := range vals {
			cv, err := convert(v, t.types[i])
			if err != nil {
				return 0, fmt.Errorf("column %s: %w", t.cols[i], err)
			}
			batch = append(batch, cv)
		}
		if n++; n == batchRows {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return copied, nil
}

// convert turns a SQLite value (int64, float64, string, []byte or nil)
// into one for a Postgres column of type pgType.
func convert(v any, pgType string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch pgType {
	case "bytea":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	case "boolean":
		switch x := v.(type) {
		case int64:
			return x != 0, nil
		case bool:
			return x, nil
		}
	case "bigint", "integer", "smallint":
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			return int64(x), nil
		case string:
			return strconv.ParseInt(x, 10, 64)
		}
	case "uuid":
		switch x := v.(type) {
		case string:
			return uuid.Parse(x)
		case []byte:
			if len(x) == 16 {
				return uuid.FromBytes(x)
			}
			return uuid.ParseBytes(x)
		}
	case "text", "character varying":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		}
	default:
		return v, nil
	}
	return nil, fmt.Errorf("a %T cannot go into a %s column", v, pgType)
}

func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}

// verify loads the device from Postgres through whatsmeow and compares it
// with the SQLite store's (dev), and the device's rows per table; it
// returns the device's rows in Postgres.
func (m *migrator) verify(ctx context.Context, src *sql.DB, dev *wastore.Device) (int, error) {
	got, err := m.container.GetDevice(ctx, *dev.ID)
	if err != nil {
		return 0, fmt.Errorf("verify: load the device from Postgres: %w", err)
	}
	if got == nil {
		return 0, errors.New("verify: the device is not in Postgres")
	}
	if a, b := fingerprint(dev), fingerprint(got); a != b {
		return 0, fmt.Errorf("verify: the device in Postgres differs from the SQLite store's (%s)", diff(a, b))
	}
	tables, err := m.tables(ctx, src)
	if err != nil {
		return 0, err
	}
	jid := dev.ID.String()
	total := 0
	for _, t := range tables {
		if t.device == "" {
			continue // shared by every device: other sessions add rows
		}
		var want, have int
		if err := src.QueryRowContext(ctx, "SELECT count(*) FROM "+quote(t.name)+" WHERE "+quote(t.device)+" = ?", jid).Scan(&want); err != nil {
			return 0, fmt.Errorf("verify %s: %w", t.name, err)
		}
		if err := m.db.QueryRowContext(ctx, "SELECT count(*) FROM "+quote(t.name)+" WHERE "+quote(t.device)+" = $1", jid).Scan(&have); err != nil {
			return 0, fmt.Errorf("verify %s: %w", t.name, err)
		}
		if want != have {
			return 0, fmt.Errorf("verify: %s has %d rows of the device in Postgres, %d in the SQLite store", t.name, have, want)
		}
		total += have
	}
	return total, nil
}

// Fingerprint is what identifies a device's credentials: its JID,
// registration id, and its noise, identity and signed prekeys. Two stores
// holding the same fingerprint log in as the same device. It holds
// private keys: never log or print it.
type Fingerprint struct {
	JID             string
	RegistrationID  uint32
	Noise, Identity [32]byte
	SignedPreKey    [32]byte
	SignedPreKeyID  uint32
	SignedPreKeySig [64]byte
	AdvSecretKey    [32]byte
}

// FingerprintOf is dev's fingerprint.
func FingerprintOf(dev *wastore.Device) Fingerprint { return fingerprint(dev) }

func fingerprint(dev *wastore.Device) Fingerprint {
	f := Fingerprint{RegistrationID: dev.RegistrationID}
	if dev.ID != nil {
		f.JID = dev.ID.String()
	}
	if dev.NoiseKey != nil {
		f.Noise = *dev.NoiseKey.Priv
	}
	if dev.IdentityKey != nil {
		f.Identity = *dev.IdentityKey.Priv
	}
	if dev.SignedPreKey != nil {
		f.SignedPreKey, f.SignedPreKeyID = *dev.SignedPreKey.Priv, dev.SignedPreKey.KeyID
		if dev.SignedPreKey.Signature != nil {
			f.SignedPreKeySig = *dev.SignedPreKey.Signature
		}
	}
	copy(f.AdvSecretKey[:], dev.AdvSecretKey)
	return f
}

// diff names the fingerprint's fields that differ, never their values.
func diff(a, b Fingerprint) string {
	var d []string
	if a.JID != b.JID {
		d = append(d, "JID")
	}
	if a.RegistrationID != b.RegistrationID {
		d = append(d, "registration id")
	}
	if a.Noise != b.Noise {
		d = append(d, "noise key")
	}
	if a.Identity != b.Identity {
		d = append(d, "identity key")
	}
	if a.SignedPreKey != b.SignedPreKey || a.SignedPreKeyID != b.SignedPreKeyID || a.SignedPreKeySig != b.SignedPreKeySig {
		d = append(d, "signed prekey")
	}
	if a.AdvSecretKey != b.AdvSecretKey {
		d = append(d, "ADV secret")
	}
	return strings.Join(d, ", ")
}
