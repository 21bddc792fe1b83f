// Package cfgfile reads the files that settings name (CA certificates,
// client certificates and keys) safely: regular files only, at most MaxSize
// bytes each, within the caller's deadline, so a FIFO cannot hang a call and
// /dev/zero cannot exhaust memory. Errors name the variable.
package cfgfile

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// Limits on reading a configuration file (CA certificate, client
// certificate or key): a CA bundle is a few hundred KiB at most.
const (
	MaxSize     = 1 << 20 // bytes per file
	maxDirFiles = 1000    // files read from a CA directory
)

// errNotRegular is returned for a FIFO, device, socket or directory: reading
// one could block forever (FIFO) or never end (/dev/zero).
var errNotRegular = errors.New("not a regular file")

// Check reports, without opening it, whether path is a regular file (or,
// with dir, a directory) that can be used as variable's value.
func Check(variable, path string, dir bool) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fileError(variable, path, err)
	case dir && !fi.IsDir():
		return fileError(variable, path, errors.New("not a directory"))
	case !dir && !fi.Mode().IsRegular():
		return fileError(variable, path, errNotRegular)
	case !dir && fi.Size() > MaxSize:
		return fileError(variable, path, fmt.Errorf("larger than %d bytes", MaxSize))
	}
	return nil
}

func fileError(variable, path string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is in the message already
	}
	return msaerr.New(msaerr.NotConfigured, variable, "%s=%s cannot be used: %v", variable, redact.Echo(path), err)
}

// Read reads a regular file of at most MaxSize bytes within ctx's
// deadline. Errors name variable.
func Read(ctx context.Context, variable, path string) ([]byte, error) {
	return bounded(ctx, variable, path, func() ([]byte, error) { return readRegular(path) })
}

// ReadDir reads the regular files directly inside dir (others are skipped),
// each of at most MaxSize bytes, within ctx's deadline.
func ReadDir(ctx context.Context, variable, dir string) ([][]byte, error) {
	var out [][]byte
	_, err := bounded(ctx, variable, dir, func() ([]byte, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() && e.Type()&os.ModeSymlink == 0 {
				continue
			}
			if len(out) == maxDirFiles {
				return nil, fmt.Errorf("holds more than %d files", maxDirFiles)
			}
			b, err := readRegular(filepath.Join(dir, e.Name()))
			if errors.Is(err, errNotRegular) {
				continue // a symlink to something else
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
			out = append(out, b)
		}
		return nil, nil
	})
	return out, err
}

// bounded runs read in the background and gives up when ctx ends (a file on
// a hung network mount must not hang the caller).
func bounded(ctx context.Context, variable, path string, read func() ([]byte, error)) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := read()
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fileError(variable, path, r.err)
		}
		return r.b, nil
	case <-ctx.Done():
		return nil, fileError(variable, path, errors.New("not read in time"))
	}
}

// readRegular opens path without blocking (a FIFO would wait for a writer),
// checks that it is a regular file and reads at most MaxSize bytes.
func readRegular(path string) ([]byte, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, errNotRegular
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openNonBlocking, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errNotRegular
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxSize)
	}
	return b, nil
}

// SystemPoolWith returns the system roots plus the PEM certificates in the
// file named by variable (a CA bundle for a private CA or a TLS-inspecting
// proxy), read with Read's limits.
func SystemPoolWith(ctx context.Context, variable, path string) (*x509.CertPool, error) {
	pem, err := Read(ctx, variable, path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, msaerr.New(msaerr.NotConfigured, variable, "%s=%s holds no PEM certificate", variable, redact.Echo(path))
	}
	return pool, nil
}
