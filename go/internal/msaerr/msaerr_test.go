package msaerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorMessageAndCause(t *testing.T) {
	e := New(NotConfigured, "VAULT_ADDR", "%s is not set", "VAULT_ADDR")
	if e.Error() != "VAULT_ADDR is not set" || e.Code != NotConfigured || e.Variable != "VAULT_ADDR" || e.Unwrap() != nil {
		t.Fatalf("New = %+v (%q)", e, e.Error())
	}
	cause := errors.New("connection refused")
	w := Wrap(Backend, cause, "reading %s", "secret/x")
	if w.Error() != "reading secret/x: connection refused" || !errors.Is(w, cause) || w.Code != Backend {
		t.Fatalf("Wrap = %+v (%q)", w, w.Error())
	}
}

func TestAs(t *testing.T) {
	e := New(HostNotAllowed, "", "no")
	if got := As(fmt.Errorf("context: %w", e)); got != e {
		t.Fatalf("As(wrapped) = %+v, want the same *Error", got)
	}
	plain := errors.New("boom")
	got := As(plain)
	if got.Code != Internal || got.Error() != "internal error: boom" || !errors.Is(got, plain) {
		t.Fatalf("As(plain) = %+v (%q)", got, got.Error())
	}
}

func TestRootCause(t *testing.T) {
	inner := errors.New("connection refused")
	err := fmt.Errorf("Get \"https://v/x\": %w", fmt.Errorf("dial tcp: %w", inner))
	if got := RootCause(err); got != "connection refused" {
		t.Errorf("RootCause = %q", got)
	}
	if got := RootCause(inner); got != "connection refused" {
		t.Errorf("RootCause of an unwrapped error = %q", got)
	}
}

func TestRejection(t *testing.T) {
	base := New(Backend, "VAULT_TOKEN", "permission denied")
	if IsRejection(base) {
		t.Fatal("a plain backend error is a rejection")
	}
	if !IsRejection(fmt.Errorf("wrapped: %w", New(Backend, "", "x").Reject())) {
		t.Fatal("a wrapped rejection is not seen")
	}
	if !IsRejection(New(SecretUnusable, "", "no token")) {
		t.Fatal("an unusable secret is not a rejection")
	}
	if IsRejection(errors.New("plain")) {
		t.Fatal("a foreign error is a rejection")
	}
}
