// Package trim releases this binary's read-only file pages from the process's
// resident set after each fetch.
//
// Loading the library (or starting the helper) runs the loader's relocation
// pass over a 1.5 MB table, the Go runtime's start and the package
// initialisers of three cloud SDKs: code and data used once. The kernel maps
// a file's cached pages a whole page-cache folio at a time (64 kB windows of
// 4 kB pages, or the whole folio, up to 1 MB on this machine's ext4), so these
// touches leave almost the whole file resident (about 11 MB of a 14 MB
// library) for the life of the process, although the requests that follow
// use a small part of it. Each refresh maps the folios it touches back in, and
// so does every goroutine's exit (the runtime looks up the name of its start
// function in the function table).
//
// Code drops the process's mappings of those pages (madvise MADV_DONTNEED)
// for every read-only private mapping of this binary whose resident pages are
// all the file's own: the pages stay in the page cache, shared with every
// other process and reclaimable by the kernel like any unmapped cache page,
// and the ones still used are mapped again on their next use (a minor fault,
// no read while the page cache holds them). A mapping holding a private copy
// of any page (relocated read-only data, a debugger's breakpoint) is left
// alone, because dropping it would lose that copy. The process's private
// memory is not changed by any of this.
package trim

// Report says what Code did.
type Report struct {
	Mappings int   // read-only mappings of this binary released
	Skipped  int   // read-only mappings left alone: they hold private copies
	Bytes    int64 // resident bytes they held (before)
}

// Range is a span of this binary's read-only pages that holds no private
// copy: dropping it from the resident set loses nothing.
type Range struct {
	Start, Length uintptr
}
