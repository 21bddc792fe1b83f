//go:build !unix

package azure

// openNonBlocking: elsewhere the file type is checked before opening.
const openNonBlocking = 0
