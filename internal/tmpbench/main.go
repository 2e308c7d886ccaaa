package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	_ "modernc.org/sqlite"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func main() {
	root, _ := os.MkdirTemp("", "sb")
	defer os.RemoveAll(root)
	d, _ := store.OpenDir(root)
	ctx := context.Background()
	n := 200
	for i := range n {
		s, _ := d.Open(ctx, fmt.Sprint("s", i), store.OpenOptions{Create: true})
		fakeserver.SeedDevice(ctx, s.Container, fmt.Sprintf("1555000%04d", i))
		s.Close()
	}
	f, _ := os.Create("/tmp/cpu.prof")
	pprof.StartCPUProfile(f)
	t := time.Now()
	for i := range n {
		p := filepath.Join(root, fmt.Sprint("session-s", i), "whatsapp.db")
		db, _ := sql.Open("sqlite", "file:"+p)
		db.Ping()
		db.Close()
	}
	pprof.StopCPUProfile()
	fmt.Println("file", time.Since(t)/time.Duration(n))
}
