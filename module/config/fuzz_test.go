package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any bytes as hosts.yml either load into a configuration that
// validates, or fail with a *LoadError naming the file; never a panic.
// Seeds: testdata/hosts/*.yml and the corpus in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(seedFile))
	seeds, _ := filepath.Glob(filepath.Join("testdata", "hosts", "*.yml"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("hosts.yml", data)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || le.File != "hosts.yml" || !strings.HasPrefix(err.Error(), "hosts.yml") {
				t.Fatalf("error without file: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a configuration that does not validate: %v", err)
		}
		if len(cfg.WorkspaceHosts) == 0 {
			t.Fatal("Parse accepted no hosts")
		}
	})
}
