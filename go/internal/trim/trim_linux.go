//go:build linux

package trim

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// mapping is one line of /proc/self/maps.
type mapping struct {
	start, end uintptr
	perms      string
	dev, inode string
}

// own caches this binary's read-only private mappings: they are fixed once
// it is loaded. They come from the dynamic loader's program headers where
// the binary has it (loadedSegments), else from /proc/self/maps, read once
// (a process may map thousands of other things).
var own struct {
	once sync.Once
	ms   []mapping
	err  error
}

// Code releases the clean read-only mappings of the binary that holds this
// package's code (the shared library, or the helper's executable). It may be
// called again (after each fetch): the mappings found the first time are
// checked in /proc/self/pagemap each time, which allocates little more than
// the open file.
func Code() (Report, error) {
	return run(madvise)
}

// Plan returns the ranges Code would release now without releasing them, for
// a caller that drops them itself (madvise MADV_DONTNEED) once it has left
// this binary's code: whatever code runs after a release maps its folios
// back, and the way back from a call into the library (cgo's return path,
// the runtime) spans several of them.
func Plan() ([]Range, error) {
	var out []Range
	_, err := run(func(start, length uintptr) error {
		out = append(out, Range{Start: start, Length: length})
		return nil
	})
	return out, err
}

func run(advise func(start, length uintptr) error) (Report, error) {
	own.once.Do(func() {
		addr := reflect.ValueOf(Code).Pointer()
		if ms, ok := loadedSegments(addr, os.Getpagesize()); ok {
			own.ms = ms
			return
		}
		maps, err := os.Open("/proc/self/maps")
		if err != nil {
			own.err = err
			return
		}
		defer maps.Close()
		own.ms, own.err = ownMappings(maps, addr)
	})
	if own.err != nil || len(own.ms) == 0 {
		return Report{}, own.err
	}
	pagemap, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return Report{}, err
	}
	defer pagemap.Close()
	return release(own.ms, pagemap, os.Getpagesize(), advise)
}

func parseLine(line string) (mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return mapping{}, false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return mapping{}, false
	}
	return mapping{start: uintptr(start), end: uintptr(end), perms: f[1], dev: f[3], inode: f[4]}, true
}

// readOnlyPrivate: mapped without write permission and not shared.
func (m mapping) readOnlyPrivate() bool {
	return len(m.perms) == 4 && m.perms[1] == '-' && m.perms[3] == 'p'
}

// ownMappings reads /proc/self/maps text from r and returns the read-only,
// private mappings of the file that holds addr. Only read-only private file
// mappings are kept while reading (a process may map thousands of things).
func ownMappings(r io.Reader, addr uintptr) ([]mapping, error) {
	var candidates []mapping
	var dev, inode string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m, ok := parseLine(sc.Text())
		if !ok {
			continue
		}
		if addr >= m.start && addr < m.end {
			dev, inode = m.dev, m.inode
		}
		if m.inode != "0" && m.readOnlyPrivate() {
			candidates = append(candidates, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if inode == "" || inode == "0" {
		return nil, nil
	}
	var out []mapping
	for _, m := range candidates {
		if m.dev == dev && m.inode == inode {
			out = append(out, m)
		}
	}
	return out, nil
}

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pagePresent = 1 << 63
	pageSwapped = 1 << 62 // a private page in swap
	pageFile    = 1 << 61 // file page or shared anonymous
)

// pagemapChunk: entries read at a time (8 bytes each).
const pagemapChunk = 512

// release drops each mapping whose present pages are all file pages, as
// /proc/self/pagemap (read through pm) says. Every mapping is checked first,
// then the releases are made one after another: the code that runs after a
// release maps its folio back, so nothing else runs between them (no
// pagemap read, no call into another package).
func release(ms []mapping, pm io.ReaderAt, pageSize int, advise func(start, length uintptr) error) (Report, error) {
	var r Report
	var entries [pagemapChunk]uint64 // native-endian, as the kernel writes them
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&entries[0])), 8*pagemapChunk)
	var keep [8]mapping
	drop := keep[:0]
	for _, m := range ms {
		first := int64(m.start / uintptr(pageSize))
		n := int64((m.end - m.start) / uintptr(pageSize))
		present, private := int64(0), false
		for done := int64(0); done < n && !private; done += pagemapChunk {
			k := min(n-done, pagemapChunk)
			if _, err := pm.ReadAt(raw[:8*k], (first+done)*8); err != nil {
				return r, fmt.Errorf("pagemap: %w", err)
			}
			for _, e := range entries[:k] {
				if e&pageSwapped != 0 || (e&pagePresent != 0 && e&pageFile == 0) {
					private = true
					break
				}
				if e&pagePresent != 0 {
					present++
				}
			}
		}
		if private {
			r.Skipped++
			continue
		}
		if present == 0 {
			continue
		}
		drop = append(drop, m)
		r.Bytes += present * int64(pageSize)
	}
	for _, m := range drop {
		if err := advise(m.start, m.end-m.start); err != nil {
			return r, err
		}
		r.Mappings++
	}
	return r, nil
}

func madvise(start, length uintptr) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, start, length, syscall.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}
