//go:build linux

package trim

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

var sink byte

const sampleMaps = `55d0c0000000-55d0c0001000 r--p 00000000 fd:01 4242 /opt/lib/libmsa.so
55d0c0001000-55d0c0800000 r-xp 00001000 fd:01 4242 /opt/lib/libmsa.so
55d0c0800000-55d0c0a00000 r--p 00800000 fd:01 4242 /opt/lib/libmsa.so
55d0c0a00000-55d0c0a10000 rw-p 00a00000 fd:01 4242 /opt/lib/libmsa.so
55d0c0a10000-55d0c0a20000 r--s 00a10000 fd:01 4242 /opt/lib/libmsa.so
55d0c1000000-55d0c1100000 r-xp 00000000 fd:01 77 /usr/lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
garbage line
`

func TestOwnMappingsAreTheReadOnlyPrivateMappingsOfTheFileHoldingTheAddress(t *testing.T) {
	own := func(addr uintptr) []mapping {
		t.Helper()
		got, err := ownMappings(strings.NewReader(sampleMaps), addr)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := own(0x55d0c0001234)
	if len(got) != 3 {
		t.Fatalf("got %d mappings, want the three read-only private ones: %+v", len(got), got)
	}
	for _, m := range got {
		if m.inode != "4242" || m.perms[1] != '-' || m.perms[3] != 'p' {
			t.Fatalf("released a mapping it must not: %+v", m)
		}
	}
	if got := own(0x7ffd00000100); got != nil { // anonymous: inode 0
		t.Fatalf("an anonymous mapping's address chose %+v", got)
	}
	if got := own(0x1000); got != nil {
		t.Fatalf("an address in no mapping chose %+v", got)
	}
}

// A private file mapping of pages pages: page 0 read (a file page), page
// written written (a private copy; none when negative), then made read-only,
// as the loader leaves relocated data.
func privateMapping(t *testing.T, pages, written int) mapping {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	size := pages * os.Getpagesize()
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(b) })
	sink += b[0] // a read: maps the file's page
	if written >= 0 {
		b[written*os.Getpagesize()] = 1
	}
	if err := syscall.Mprotect(b, syscall.PROT_READ); err != nil {
		t.Fatal(err)
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	return mapping{start: start, end: start + uintptr(size), perms: "r--p"}
}

// The loader's program headers name the pages /proc/self/maps would have
// released: this binary's read-only private mappings without a private copy
// (the relocated read-only data is part of a writable segment, and so never
// named), and nothing of another file.
func TestLoadedSegmentsNameWhatMapsWouldRelease(t *testing.T) {
	addr := reflect.ValueOf(Code).Pointer()
	page := os.Getpagesize()
	segs, ok := loadedSegments(addr, page)
	if !ok {
		t.Skip("built without cgo: /proc/self/maps is the only source")
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	fromMaps, err := ownMappings(maps, addr)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	released := func(ms []mapping) map[uintptr]bool {
		t.Helper()
		out := map[uintptr]bool{}
		if _, err := release(ms, pm, page, func(start, length uintptr) error {
			for p := start; p < start+length; p += uintptr(page) {
				out[p] = true
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, sg := range segs { // each page named is in a read-only mapping (the release checks no more than that)
		inside := false
		for _, m := range fromMaps {
			inside = inside || (sg.start >= m.start && sg.end <= m.end)
		}
		if !inside {
			t.Fatalf("segment %#x-%#x is not within one of this binary's read-only mappings %+v", sg.start, sg.end, fromMaps)
		}
	}
	got, want := released(segs), released(fromMaps)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("program headers: %d pages in %+v; /proc/self/maps: %d in %+v", len(got), segs, len(want), fromMaps)
	}
	for p := range got {
		if !want[p] {
			t.Fatalf("page %#x is not one /proc/self/maps would release (%+v)", p, fromMaps)
		}
	}
	if _, ok := loadedSegments(uintptr(unsafe.Pointer(&sink)), page); !ok {
		t.Fatal("the address of a variable in this binary's data found no loaded object")
	}
	if ms, ok := loadedSegments(1, page); ok || ms != nil {
		t.Fatalf("address 1 found %+v", ms)
	}
}

func TestAMappingWithAPrivateCopyIsLeftAlone(t *testing.T) {
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	// The second copy's private page lies beyond the first pagemap chunk.
	clean, copied, copiedLate := privateMapping(t, 2, -1), privateMapping(t, 2, 1), privateMapping(t, pagemapChunk+3, pagemapChunk+1)
	var advised []mapping
	advise := func(start, length uintptr) error {
		advised = append(advised, mapping{start: start, end: start + length})
		return nil
	}
	r, err := release([]mapping{copied, clean, copiedLate}, pm, os.Getpagesize(), advise)
	if err != nil {
		t.Fatal(err)
	}
	if r.Skipped != 2 || r.Mappings != 1 || len(advised) != 1 || advised[0].start != clean.start {
		t.Fatalf("report %+v, advised %+v: want only the clean mapping released", r, advised)
	}
	if ps := int64(os.Getpagesize()); r.Bytes < ps || r.Bytes > 2*ps { // the page read, and its neighbour if faulted around
		t.Fatalf("released %d bytes, want the resident pages of the clean mapping", r.Bytes)
	}
}

// residentKB: the Rss of this test binary's read-only private mappings.
func residentKB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	mine, err := ownMappings(maps, reflect.ValueOf(Code).Pointer())
	if err != nil {
		t.Fatal(err)
	}
	own := map[uintptr]bool{}
	for _, m := range mine {
		own[m.start] = true
	}
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if lo, _, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			start, err := strconv.ParseUint(lo, 16, 64)
			in = err == nil && own[uintptr(start)]
			continue
		}
		if in && fields[0] == "Rss:" {
			n, _ := strconv.Atoi(fields[1])
			total += n
		}
	}
	return total
}

func TestCodeDropsThisBinarysPagesAndTheCodeStillRuns(t *testing.T) {
	before := residentKB(t)
	r, err := Code()
	if err != nil {
		t.Fatal(err)
	}
	after := residentKB(t)
	if r.Mappings == 0 || r.Bytes == 0 {
		t.Fatalf("nothing released: %+v", r)
	}
	if after >= before {
		t.Fatalf("resident kB of this binary's read-only mappings: %d before, %d after", before, after)
	}
	// The released code is mapped again on use: run some of it.
	if got := strings.Repeat(strconv.Itoa(42), 2); got != "4242" {
		t.Fatalf("got %q", got)
	}
	t.Logf("released %d mappings (%d kB resident); this binary's read-only pages: %d kB -> %d kB", r.Mappings, r.Bytes/1024, before, after)
}

// Code runs after every fetch: again, it releases what was used since, and
// reads /proc/self/maps no more (a Python process maps thousands of things;
// each line read allocates).
func TestCodeAgainReleasesAgainWithoutReadingMapsAgain(t *testing.T) {
	if _, err := Code(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Repeat(strconv.Itoa(7), 3); got != "777" { // fault some code back in
		t.Fatalf("got %q", got)
	}
	r, err := Code()
	if err != nil {
		t.Fatal(err)
	}
	if r.Mappings == 0 || r.Bytes == 0 {
		t.Fatalf("the second call released nothing: %+v", r)
	}
	if n := testing.AllocsPerRun(5, func() { _, _ = Code() }); n > 10 {
		t.Fatalf("%.0f allocations per call after the first, want a few (open, close)", n)
	}
}

// Plan is Code for a caller that releases the pages itself: it names the
// same mappings, page-aligned, releases nothing, and what it names is what
// holds this binary's read-only pages.
func TestPlanNamesWhatCodeWouldReleaseAndReleasesNothing(t *testing.T) {
	before := residentKB(t)
	ranges, err := Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(ranges) == 0 {
		t.Fatal("Plan named no range")
	}
	if during := residentKB(t); during < before {
		t.Fatalf("Plan released pages: %d kB -> %d kB", before, during)
	}
	page := uintptr(os.Getpagesize())
	for _, r := range ranges {
		if r.Start%page != 0 || r.Length == 0 || r.Length%page != 0 {
			t.Fatalf("range %#x+%#x is not whole pages", r.Start, r.Length)
		}
		found := false
		for _, m := range own.ms {
			found = found || (m.start == r.Start && m.end-m.start == r.Length)
		}
		if !found {
			t.Fatalf("range %#x+%#x is not one of this binary's read-only mappings", r.Start, r.Length)
		}
	}
	for _, r := range ranges { // what the caller does
		if err := madvise(r.Start, r.Length); err != nil {
			t.Fatal(err)
		}
	}
	if after := residentKB(t); after >= before {
		t.Fatalf("releasing the planned ranges left %d kB of %d", after, before)
	}
	r, err := Code()
	if err != nil {
		t.Fatal(err)
	}
	if r.Mappings > len(ranges) {
		t.Fatalf("Code released %d mappings, Plan named %d", r.Mappings, len(ranges))
	}
}
