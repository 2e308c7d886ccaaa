package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// seed is `fakewa seed -dir SESSIONS_DIR -n N [-prefix P] [-user-base B]`:
// it writes N paired sessions into SESSIONS_DIR as an earlier run of the
// service would have left them (closed cleanly), with devices every fake
// server accepts (fakeserver.SeedStores): session P00000 with phone number
// B0000000, P00001 with B0000001, and so on. Tests built with -race run it
// as a child process, since SQLite work under the race detector is about
// fifteen times slower.
func seed(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("fakewa seed", flag.ContinueOnError)
	fs.SetOutput(logw)
	dir := fs.String("dir", "", "sessions directory to write (required)")
	n := fs.Int("n", 0, "number of sessions (required, at least 1)")
	prefix := fs.String("prefix", "s", "senderId prefix: PREFIX00000, PREFIX00001, ...")
	userBase := fs.String("user-base", "1555", "phone number prefix: USERBASE0000000, USERBASE0000001, ...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *n < 1 {
		return errors.New("seed: -dir and -n (at least 1) are required")
	}
	seeds := make([]fakeserver.Seed, *n)
	for i := range seeds {
		seeds[i] = fakeserver.Seed{ID: seedID(*prefix, i), User: seedUser(*userBase, i)}
	}
	opts := fakeserver.SeedOptions{Workers: 4 * runtime.NumCPU(), CleanClose: true}
	if err := fakeserver.SeedStores(ctx, *dir, seeds, opts); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// seedID is the senderId of the i-th session fakewa seed writes.
func seedID(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i) }

// seedUser is the phone number of the i-th session fakewa seed writes.
func seedUser(userBase string, i int) string { return fmt.Sprintf("%s%07d", userBase, i) }
