package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/redact"
)

// maxFileSize caps the CA bundle read: a bundle is a few hundred KiB at most.
const maxFileSize = 1 << 20

// errNotRegular is returned for a FIFO, device, socket or directory: reading
// one could block forever (FIFO) or never end (/dev/zero).
var errNotRegular = errors.New("not a regular file")

// checkFile reports, without opening it, whether path is a regular file that
// can be used as variable's value.
func checkFile(variable, path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fileError(variable, path, err)
	case !fi.Mode().IsRegular():
		return fileError(variable, path, errNotRegular)
	case fi.Size() > maxFileSize:
		return fileError(variable, path, fmt.Errorf("larger than %d bytes", maxFileSize))
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

// readFile reads a regular file of at most maxFileSize bytes within ctx's
// deadline, in the background so a file on a hung mount cannot hang the
// caller. Errors name variable.
func readFile(ctx context.Context, variable, path string) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := readRegular(path)
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
// checks that it is a regular file and reads at most maxFileSize bytes.
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
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return b, nil
}
