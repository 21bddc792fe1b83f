//go:build !unix

package vault

// openNonBlocking: elsewhere the file type is checked before opening.
const openNonBlocking = 0
