package cfgfile

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// A CA bundle adds to the system roots; a file without a certificate, or one
// that cannot be read, is an error naming the variable.
func TestSystemPoolWith(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "msa-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := SystemPoolWith(context.Background(), "X_CA_BUNDLE", good)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("the bundle's CA is not trusted: %v", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.pem")} {
		if _, err := SystemPoolWith(context.Background(), "X_CA_BUNDLE", path); err == nil || !strings.Contains(err.Error(), "X_CA_BUNDLE") {
			t.Errorf("%s: %v", path, err)
		}
	}
}
