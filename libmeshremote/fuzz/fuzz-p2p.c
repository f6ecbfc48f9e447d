/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the point-to-point stream parser (p2p/p2p-reader.c): the
 * bytes a peer writes on the stream, the hello then u64-LE-length frames,
 * read in chunks of varying size.
 *
 * Input: one byte seeding the chunk sizes (1 to 64 KiB + a bit, as short
 * reads come), then the stream.
 *
 * Checks: no crash, no leak; the chunked reader yields exactly what a
 * one-pass reference parse of the whole stream yields (the hello, each
 * frame's bytes, the error at bad magic or an oversize length, and at the
 * end whether the stream was cut inside a hello or a frame); the memory
 * held for a frame never exceeds twice what arrived of it, or 256 KiB; and
 * and every frame goes through mesh_event_get_size() (0 for a frame
 * shorter than an event header).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2p/p2p-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(gboolean ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz-p2p: %s\n", what);
		abort();
	}
}

/* The reference: the item at @pos of the whole stream (0: more needed, -1: error). */
static int ref_next(const uint8_t *s, size_t n, size_t *pos, gboolean *hello_done,
		    const uint8_t **ret_data, size_t *ret_size)
{
	size_t left = n - *pos;
	if (!*hello_done) {
		if (left < P2P_HELLO_SIZE)
			return 0;
		if (memcmp(s + *pos, "mesh", 4) != 0)
			return -1;
		*ret_data = s + *pos + 4;
		*ret_size = 32;
		*pos += P2P_HELLO_SIZE;
		*hello_done = TRUE;
		return 1;
	}
	if (left < 8)
		return 0;
	guint64 len;
	memcpy(&len, s + *pos, 8);
	len = GUINT64_FROM_LE(len);
	if (len > P2P_MAX_FRAME)
		return -1;
	if (left - 8 < len)
		return 0;
	*ret_data = s + *pos + 8;
	*ret_size = (size_t)len;
	*pos += 8 + (size_t)len;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	guint32 seed = data[0] * 2654435761u + 1;
	const uint8_t *s = data + 1;
	size_t n = size - 1;

	P2pReader r;
	p2p_reader_init(&r);
	size_t fed = 0, ref_pos = 0, frame_start_fed = 0;
	gboolean ref_hello = FALSE, failed = FALSE;

	while (fed < n && !failed) {
		size_t space;
		uint8_t *at = p2p_reader_space(&r, &space);
		check(space > 0, "no space to read into");
		seed = seed * 1103515245u + 12345u;
		size_t want = 1 + (seed >> 8) % ((seed & 0x10) ? 70000 : 64);
		size_t chunk = MIN(MIN(want, space), n - fed);
		memcpy(at, s + fed, chunk);
		fed += chunk;
		p2p_reader_commit(&r, chunk);
		check(!r.big || r.big_cap <= MAX((size_t)4 * P2P_READ_CHUNK,
						 2 * (fed - frame_start_fed)),
		      "a frame's buffer grew past what arrived");

		P2pItem it;
		P2pItemKind k;
		GError *error = NULL;
		while ((k = p2p_reader_next(&r, &it, &error)) != P2P_ITEM_NONE) {
			const uint8_t *rd = NULL;
			size_t rs = 0;
			int rk = ref_next(s, fed, &ref_pos, &ref_hello, &rd, &rs);
			if (k == P2P_ITEM_ERROR) {
				check(rk == -1, "an error the reference does not see");
				check(error && error->domain == MESH_ERROR, "an error without a GError");
				g_error_free(error);
				failed = TRUE;
				break;
			}
			check(rk == 1, "an item the reference does not see");
			if (k == P2P_ITEM_HELLO) {
				check(rs == 32 && memcmp(rd, it.node.bytes, 16) == 0 &&
					      memcmp(rd + 16, it.port.bytes, 16) == 0,
				      "the hello differs");
			} else {
				check(rs == it.size && memcmp(rd, it.data, rs) == 0,
				      "a frame differs");
				gsize ev = mesh_event_get_size(it.data, it.size);
				check(it.size >= 40 || ev == 0, "an event size from a short frame");
				g_free(it.owned);
			}
			frame_start_fed = ref_pos;
		}
		if (!failed) {
			/* Nothing left behind that the reference would have yielded. */
			size_t p = ref_pos;
			gboolean h = ref_hello;
			const uint8_t *rd;
			size_t rs;
			check(ref_next(s, fed, &p, &h, &rd, &rs) == 0, "the reader held back an item");
		}
	}
	if (!failed) {
		GError *error = NULL;
		gboolean clean = p2p_reader_at_eof(&r, &error);
		check(clean == (ref_hello && ref_pos == n), "the end of stream verdict differs");
		check(clean == (error == NULL), "an end of stream error without a GError");
		g_clear_error(&error);
	}
	p2p_reader_clear(&r);
	return 0;
}
