package pprofserve_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The profiling endpoint exists only in -tags pprof builds: a file without
// the tag importing this package would put it into production binaries.
func TestOnlyPprofBuildsServeProfiles(t *testing.T) {
	const module = "github.com/whatsapp-sessions/whatsapp-sessions"
	for _, main := range []string{module, module + "/cmd/fakewa"} {
		for _, tags := range []string{"", "pprof"} {
			out, err := exec.Command("go", "list", "-tags", tags, "-deps", main).Output()
			if err != nil {
				t.Fatalf("go list -tags %q -deps %s: %v", tags, main, err)
			}
			deps := strings.Fields(string(out))
			has := slices.Contains(deps, "net/http/pprof")
			if want := tags == "pprof"; has != want {
				t.Errorf("%s built with -tags %q: net/http/pprof linked = %v, want %v", main, tags, has, want)
			}
		}
	}
}
