/* SPDX-License-Identifier: MIT */
/*
 * The point-to-point stream parser: the hello, then frames. Memory stays
 * bounded by what arrived: a frame's own buffer grows with its bytes (at
 * most doubling), never to the length a peer merely claims.
 */
#include <string.h>

#include "p2p-private.h"

void p2p_hello_build(uint8_t out[P2P_HELLO_SIZE], const MeshNodeId *node, const MeshPortId *port)
{
	memcpy(out, P2P_MAGIC, 4);
	memcpy(out + 4, node->bytes, 16);
	memcpy(out + 20, port->bytes, 16);
}

void p2p_reader_init(P2pReader *r)
{
	memset(r, 0, sizeof(*r));
	r->buf = g_malloc(P2P_READ_CHUNK);
}

void p2p_reader_clear(P2pReader *r)
{
	g_free(r->buf);
	g_free(r->big);
	memset(r, 0, sizeof(*r));
}

/* Moves the unconsumed bytes to the front of the buffer. */
static void compact(P2pReader *r)
{
	if (r->start == 0)
		return;
	memmove(r->buf, r->buf + r->start, r->end - r->start);
	r->end -= r->start;
	r->start = 0;
}

uint8_t *p2p_reader_space(P2pReader *r, size_t *ret_len)
{
	if (r->big) {
		if (r->big_have == r->big_cap) {
			r->big_cap = MIN(r->big_size, r->big_cap * 2);
			r->big = g_realloc(r->big, r->big_cap);
		}
		/* Up to the frame's end only: what follows goes to the read buffer. */
		*ret_len = r->big_cap - r->big_have;
		return r->big + r->big_have;
	}
	if (r->end == P2P_READ_CHUNK)
		compact(r);
	*ret_len = P2P_READ_CHUNK - r->end;
	return r->buf + r->end;
}

void p2p_reader_commit(P2pReader *r, size_t n)
{
	if (r->big)
		r->big_have += n;
	else
		r->end += n;
}

P2pItemKind p2p_reader_next(P2pReader *r, P2pItem *ret, GError **error)
{
	size_t avail = r->end - r->start;
	const uint8_t *p = r->buf + r->start;

	memset(ret, 0, sizeof(*ret));
	if (r->big) {
		if (r->big_have < r->big_size)
			return ret->kind = P2P_ITEM_NONE;
		ret->owned = r->big;
		ret->data = r->big;
		ret->size = r->big_size;
		r->big = NULL;
		r->big_size = r->big_have = r->big_cap = 0;
		return ret->kind = P2P_ITEM_FRAME;
	}
	if (!r->hello_done) {
		if (avail < P2P_HELLO_SIZE)
			return ret->kind = P2P_ITEM_NONE;
		if (memcmp(p, P2P_MAGIC, 4) != 0) {
			g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
				    "invalid address header (bad magic %02x%02x%02x%02x)", p[0],
				    p[1], p[2], p[3]);
			return ret->kind = P2P_ITEM_ERROR;
		}
		memcpy(ret->node.bytes, p + 4, 16);
		memcpy(ret->port.bytes, p + 20, 16);
		r->start += P2P_HELLO_SIZE;
		r->hello_done = TRUE;
		return ret->kind = P2P_ITEM_HELLO;
	}
	if (avail < 8) {
		compact(r);
		return ret->kind = P2P_ITEM_NONE;
	}
	guint64 len;
	memcpy(&len, p, 8);
	len = GUINT64_FROM_LE(len);
	if (len > P2P_MAX_FRAME) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "a frame of %" G_GUINT64_FORMAT " bytes, over the limit of %" G_GUINT64_FORMAT
			    " (the largest event)",
			    len, (guint64)P2P_MAX_FRAME);
		return ret->kind = P2P_ITEM_ERROR;
	}
	if (avail - 8 >= len) {
		ret->data = p + 8;
		ret->size = (size_t)len;
		r->start += 8 + (size_t)len;
		if (r->start == r->end)
			r->start = r->end = 0;
		return ret->kind = P2P_ITEM_FRAME;
	}
	if (8 + len <= P2P_READ_CHUNK) {
		compact(r);
		return ret->kind = P2P_ITEM_NONE;
	}
	/* A large frame: its own buffer, handed over whole when complete. */
	size_t have = avail - 8;
	r->big_size = (size_t)len;
	r->big_cap = MIN(r->big_size, MAX((size_t)4 * P2P_READ_CHUNK, have * 2));
	r->big = g_malloc(r->big_cap);
	memcpy(r->big, p + 8, have);
	r->big_have = have;
	r->start = r->end = 0;
	return ret->kind = P2P_ITEM_NONE;
}

gboolean p2p_reader_at_eof(P2pReader *r, GError **error)
{
	size_t avail = r->end - r->start;

	if (!r->hello_done) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "end of stream in the hello (%zu of %d bytes)", avail, P2P_HELLO_SIZE);
		return FALSE;
	}
	if (r->big) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "end of stream inside a frame (%zu of %zu bytes)", r->big_have,
			    r->big_size);
		return FALSE;
	}
	if (avail > 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION,
			    "end of stream inside a frame (%zu bytes of it)", avail);
		return FALSE;
	}
	return TRUE;
}
