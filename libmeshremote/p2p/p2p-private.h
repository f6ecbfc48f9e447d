/* SPDX-License-Identifier: MIT */
/*
 * The point-to-point transport's internals (p2p/README.md): the stream
 * parser of p2p-reader.c, for p2p-link.c, its tests and its fuzz target.
 */
#pragma once

#include <stdint.h>

/* The public headers only: the transport interface (mesh-transport.h). */
#define MESHREMOTE_COMPILATION 1
#include "meshremote/meshremote.h"

#define P2P_MAGIC "mesh"
#define P2P_HELLO_SIZE 36

/*
 * The longest frame a peer may announce: the core's largest event (a
 * header, the most resources, the largest message). More fails the link.
 */
#define P2P_MAX_FRAME ((guint64)MESH_EVENT_MAX_SIZE)

/* The read buffer; a frame that does not fit gets a buffer of its own. */
#define P2P_READ_CHUNK (64u * 1024)

/* Writes the hello of @node and @port into @out (P2P_HELLO_SIZE bytes). */
void p2p_hello_build(uint8_t out[P2P_HELLO_SIZE], const MeshNodeId *node, const MeshPortId *port);

typedef struct {
	gboolean hello_done;
	uint8_t *buf; /* P2P_READ_CHUNK bytes */
	size_t start, end;
	/* A frame over the read buffer: its own buffer, grown as bytes come. */
	uint8_t *big;
	size_t big_size, big_have, big_cap;
} P2pReader;

typedef enum {
	P2P_ITEM_NONE,  /* more bytes needed */
	P2P_ITEM_HELLO, /* node and port set */
	P2P_ITEM_FRAME, /* data and size set */
	P2P_ITEM_ERROR, /* the stream is broken: error set */
} P2pItemKind;

typedef struct {
	P2pItemKind kind;
	MeshNodeId node;
	MeshPortId port;
	/*
	 * FRAME: the event's bytes, valid until the next call on the reader;
	 * owned set: a g_malloc'ed buffer the caller takes over (g_free).
	 */
	const uint8_t *data;
	size_t size;
	uint8_t *owned;
} P2pItem;

void p2p_reader_init(P2pReader *r);
void p2p_reader_clear(P2pReader *r);
/* Where the next read goes and how much it may be (never 0). */
uint8_t *p2p_reader_space(P2pReader *r, size_t *ret_len);
/* @n bytes were read into the space. */
void p2p_reader_commit(P2pReader *r, size_t n);
/* The next hello or frame from what was read; ERROR: @error set (CORRUPTION). */
P2pItemKind p2p_reader_next(P2pReader *r, P2pItem *ret, GError **error);
/* The stream ended: FALSE (and @error set) if that cut a hello or a frame. */
gboolean p2p_reader_at_eof(P2pReader *r, GError **error);
