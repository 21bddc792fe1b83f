package cfgfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
)

func TestReadRefusesWhatCouldHangOrExhaust(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if !mkfifo(t, fifo) {
		t.Skip("no FIFOs or /dev/zero on this system")
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero", big, dir, filepath.Join(dir, "missing")} {
		if err := Check("VAULT_CACERT", path, false); err == nil || msaerr.As(err).Variable != "VAULT_CACERT" {
			t.Errorf("Check(%s): %v", path, err)
		}
		// The reader refuses it too, should the file change type after Check
		// (the FIFO must not block, /dev/zero must not be read to the end).
		if _, err := Read(context.Background(), "VAULT_CACERT", path); err == nil ||
			!strings.Contains(err.Error(), "VAULT_CACERT") {
			t.Errorf("Read(%s): %v", path, err)
		}
	}
	if err := Check("VAULT_CAPATH", big, true); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Check(dir) of a file: %v", err)
	}
	if _, err := ReadDir(context.Background(), "VAULT_CAPATH", dir); err == nil || !strings.Contains(err.Error(), "big.pem") {
		t.Errorf("ReadDir with an oversized file: %v", err)
	}
}

func TestReadAndReadDir(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"a.pem": "A", "b.pem": "B"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Check("VAULT_CAPATH", dir, true); err != nil {
		t.Errorf("Check(dir): %v", err)
	}
	got, err := ReadDir(context.Background(), "VAULT_CAPATH", dir)
	if err != nil || len(got) != 2 {
		t.Fatalf("ReadDir = %q, %v; want the two regular files", got, err)
	}
	b, err := Read(context.Background(), "VAULT_CACERT", filepath.Join(dir, "a.pem"))
	if err != nil || string(b) != "A" {
		t.Errorf("Read = %q, %v", b, err)
	}
}

func TestDeadlineEndsTheRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	block := make(chan struct{})
	defer close(block)
	_, err := bounded(ctx, "VAULT_CACERT", "x", func() ([]byte, error) { <-block; return nil, nil })
	if err == nil || !strings.Contains(err.Error(), "in time") || msaerr.As(err).Variable != "VAULT_CACERT" {
		t.Errorf("bounded after the deadline: %v", err)
	}
}
