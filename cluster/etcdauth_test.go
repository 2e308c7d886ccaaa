package cluster_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
)

// lockedBuffer is a log sink several goroutines write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// enableEtcdAuth turns etcd's auth on: a root user, and user with a role
// that may read and write the members' prefix and nothing else.
func enableEtcdAuth(t *testing.T, endpoint, user, password string) {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prefix := "/" + cluster.Name + "/members/"
	steps := []func() error{
		func() error { _, err := c.RoleAdd(ctx, "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "root", "root-password-unused"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "members"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "members", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, user, password); return err },
		func() error { _, err := c.UserGrantRole(ctx, user, "members"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd auth step %d: %v", i, err)
		}
	}
}

// TestEtcdCredentials: with etcd's auth on, members with the right
// username and password join and see each other; a member with a wrong
// password, or none, fails to start with an error that says which
// settings to check and shows neither credential; the password appears in
// no log.
func TestEtcdCredentials(t *testing.T) {
	const user, password = "ws-node-4b1e", "pa55-etcd-91fd"
	etcd := etcdtest.Start(t)

	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	provider := func(u, p string) func() (cluster.EtcdOptions, error) {
		return func() (cluster.EtcdOptions, error) {
			return cluster.EtcdOptions{Endpoints: []string{etcd.Endpoint}, Username: u, Password: p}, nil
		}
	}
	all := ids(8)
	d := newDB(all...)
	o := memberOpts{provider: etcdProviderWith(t, provider(user, password)), log: log}
	// a starts before etcd's auth is on (its credentials are harmless
	// then) and carries on after: protoactor's first remote start in a
	// process replaces gRPC's global logger, which races with any gRPC
	// client already running, such as enableEtcdAuth's.
	a := startMember(t, d, "a", o)
	enableEtcdAuth(t, etcd.Endpoint, user, password)
	b := startMember(t, d, "b", o)
	waitMembers(t, 2, a, b)

	for _, tc := range []struct {
		name, user, password, want string
	}{
		{"wrong password", user, "wrong-" + password, "check ETCD_USERNAME and ETCD_PASSWORD"},
		{"no credentials", "", "", "etcd requires authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := cluster.EtcdProvider(cluster.EtcdOptions{Endpoints: []string{etcd.Endpoint}, Username: tc.user, Password: tc.password})
			if err != nil {
				t.Fatal(err)
			}
			n, err := cluster.Start(cluster.Options{
				Name: "c", Addr: freeaddr.For(t), Provider: p,
				Leases: leases{d: d, name: "c"}, Local: newLocal(d, "c"), Registry: d,
				RequestTimeout: 2 * time.Second, Log: log,
			})
			if err == nil {
				n.Close()
				t.Fatal("a member started with bad etcd credentials")
			}
			msg := err.Error()
			t.Logf("refused: %s", msg)
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("error %q, want one saying %q", msg, tc.want)
			}
			if strings.Contains(msg, password) || strings.Contains(msg, user) {
				t.Fatalf("the error shows a credential: %q", msg)
			}
		})
	}
	// The refused members never joined.
	waitMembers(t, 2, a, b)

	a.node.Close()
	b.node.Close()
	if out := logs.String(); strings.Contains(out, password) {
		t.Fatalf("the password is in the log:\n%s", out)
	} else if !strings.Contains(out, "joined the cluster") {
		t.Fatalf("the log was not captured:\n%s", out)
	}
}

func etcdProviderWith(t *testing.T, opts func() (cluster.EtcdOptions, error)) func() protocluster.ClusterProvider {
	return func() protocluster.ClusterProvider {
		o, err := opts()
		if err != nil {
			t.Fatal(err)
		}
		p, err := cluster.EtcdProvider(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}
