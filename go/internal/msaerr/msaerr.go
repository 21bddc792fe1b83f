// Package msaerr defines the error kinds every layer reports, so the C API can
// tell callers which of them happened. Messages never contain secret values.
package msaerr

import (
	"errors"
	"fmt"
)

// Code says which kind of failure an Error is.
type Code string

// The error codes returned through the C API (field "code").
const (
	NotEnabled     Code = "not_enabled"      // no provider is switched on
	NotConfigured  Code = "not_configured"   // a variable is missing or invalid
	HostNotAllowed Code = "host_not_allowed" // the host may not receive credentials
	Backend        Code = "backend"          // the secret manager or its login failed
	SecretUnusable Code = "secret_unusable"  // the secret's content cannot make a header
	Internal       Code = "internal"         // a bug: a recovered panic or bad call
	// NotShared: a forked child asked its parent's core (MsaShare) to serve
	// an environment other than the one it serves; the child uses a helper.
	NotShared Code = "not_shared"
)

// Error is an error with a code and, where one is to blame, the variable to change.
type Error struct {
	Code     Code
	Variable string // the environment variable to change; may be empty
	Message  string
	Err      error // the underlying cause, included in Error(); never holds a secret
	// Rejected marks a failure where the backend answered and refused: a
	// 401/403/404 from it, a disabled or deleted secret. The engine reports a
	// rejection at once, does not move on to the next provider, and ends any
	// stale window. Every other failure (not configured, unreachable, timed
	// out, a 5xx) means the source is unavailable: the next provider is tried
	// and a held value may be served stale. SecretUnusable is always a rejection.
	Rejected bool
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a formatted message.
func New(code Code, variable, format string, args ...any) *Error {
	return &Error{Code: code, Variable: variable, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error whose message is followed by the cause.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// Reject marks e as a rejection (see Error.Rejected) and returns it.
func (e *Error) Reject() *Error {
	e.Rejected = true
	return e
}

// IsRejection reports whether err is, or wraps, a rejection: the backend
// answered and refused, or the secret cannot make a header.
func IsRejection(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Rejected || e.Code == SecretUnusable)
}

// As returns err as an *Error, classifying unknown errors as Internal.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Internal, Message: "internal error", Err: err}
}

// RootCause is the innermost error's text: the network reason, without the
// wrappers' repetitions of the URL.
func RootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
