//go:build linux && cgo

package trim

/*
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>

typedef struct { uintptr_t start, end; } msa_span;

typedef struct {
	uintptr_t addr;
	size_t page;
	msa_span *out;
	int max, n, found;
} msa_span_ctx;

// The loaded object whose segments hold c->addr: the pages the loader
// mapped from the file for each of its segments without write permission.
// A segment is mapped from the page holding its first byte to the page
// holding its last, and a later segment's mapping replaces a page they
// share, so the page a read-only segment shares with the next one is not
// its own.
static int msa_span_cb(struct dl_phdr_info *info, size_t size, void *data) {
	msa_span_ctx *c = data;
	const ElfW(Phdr) *p = info->dlpi_phdr;
	uintptr_t mask = ~(uintptr_t)(c->page - 1);
	int i, j, mine = 0;
	(void)size;
	for (i = 0; i < info->dlpi_phnum; i++) {
		uintptr_t lo = info->dlpi_addr + p[i].p_vaddr;
		if (p[i].p_type == PT_LOAD && c->addr >= lo && c->addr - lo < p[i].p_memsz) mine = 1;
	}
	if (!mine) return 0;
	c->found = 1;
	for (i = 0; i < info->dlpi_phnum && c->n < c->max; i++) {
		uintptr_t start, end;
		if (p[i].p_type != PT_LOAD || (p[i].p_flags & PF_W) || p[i].p_filesz == 0) continue;
		start = (info->dlpi_addr + p[i].p_vaddr) & mask;
		end = (info->dlpi_addr + p[i].p_vaddr + p[i].p_filesz + c->page - 1) & mask;
		for (j = i + 1; j < info->dlpi_phnum; j++) { // PT_LOAD entries are sorted by address
			if (p[j].p_type != PT_LOAD) continue;
			uintptr_t next = (info->dlpi_addr + p[j].p_vaddr) & mask;
			if (next < end) end = next;
			break;
		}
		if (end <= start) continue;
		c->out[c->n].start = start;
		c->out[c->n].end = end;
		c->n++;
	}
	return 1;
}

static int msa_spans(uintptr_t addr, size_t page, msa_span *out, int max) {
	msa_span_ctx c = {addr, page, out, max, 0, 0};
	dl_iterate_phdr(msa_span_cb, &c);
	return c.found ? c.n : -1;
}
*/
import "C"

// loadedSegments returns the pages of the loaded object (the shared
// library, or the executable) that holds addr which the loader mapped from
// its read-only segments, from the program headers the dynamic loader keeps
// (dl_iterate_phdr). The relocated read-only data is not among them (it is
// part of a writable segment). It reads no file: /proc/self/maps of a
// Python process that has imported MLflow runs to hundreds of kilobytes,
// which the kernel formats line by line (about 2 ms of the first headers).
// ok is false when the loader knows no object at addr.
func loadedSegments(addr uintptr, pageSize int) (ms []mapping, ok bool) {
	var spans [8]C.msa_span
	n := int(C.msa_spans(C.uintptr_t(addr), C.size_t(pageSize), &spans[0], C.int(len(spans))))
	if n < 0 {
		return nil, false
	}
	for _, s := range spans[:n] {
		ms = append(ms, mapping{start: uintptr(s.start), end: uintptr(s.end), perms: "r--p"})
	}
	return ms, true
}
