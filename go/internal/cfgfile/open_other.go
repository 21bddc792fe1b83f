//go:build !unix

package cfgfile

// openNonBlocking: elsewhere the file type is checked before opening.
const openNonBlocking = 0
