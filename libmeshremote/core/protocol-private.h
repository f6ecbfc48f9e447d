/* SPDX-License-Identifier: MIT */
/*
 * The node-to-node event wire format (upstream mesh_node protocol.rs):
 * a 40-byte header, resource_count 96-byte resource records, then the
 * payload. All integers little-endian, ids as 16 raw bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshremote/mesh-node.h"

#define MESH_EVENT_HEADER_SIZE 40
#define MESH_RESOURCE_DATA_SIZE 96
#define MESH_CHANGE_PEER_DATA_SIZE 48
#define MESH_FAIL_PORT_DATA_SIZE 16

/* Bounds on what an event from a peer may claim. */
#define MESH_EVENT_MAX_RESOURCES 4096u
#define MESH_EVENT_MAX_MESSAGE_SIZE (256u << 20)

typedef enum {
	MESH_EVENT_MESSAGE = 1,
	MESH_EVENT_CHANGE_PEER = 3,
	MESH_EVENT_ACK_CHANGE_PEER = 4,
	MESH_EVENT_ACK_PORT = 5,
	MESH_EVENT_FAIL_PORT = 6,
	/*
	 * A C extension, sent only to nodes whose transport says they read it
	 * (MESH_REMOTE_FEATURE_PROXY_DONE): a finished move proxy tells the port's new
	 * home that every event below seq came through it (seq in the header,
	 * no payload, out of band). See port.c.
	 */
	MESH_EVENT_PROXY_DONE = 0x40,
} MeshEventType;

#define MESH_EVENT_FLAG_MESSAGE 0x1
#define MESH_EVENT_FLAG_CLOSE 0x2
/*
 * CHANGE_PEER from a bridge, a C extension (to nodes that read PROXY_DONE
 * only): what the new peer sends still comes through a proxy on the
 * sending node until that proxy's PROXY_DONE.
 */
#define MESH_EVENT_FLAG_FORWARDS 0x4

typedef struct {
	MeshPortId port_id;
	uint8_t type;
	uint8_t flags;
	uint64_t seq;
	uint32_t resource_count;
	uint32_t message_size;
} MeshEventHeader;

typedef struct {
	MeshPortId id; /* zero: an fd, the next one of the packet's fds */
	uint64_t next_local_seq;
	MeshNodeId old_node;
	MeshPortId old_port;
	MeshNodeId peer_node;
	MeshPortId peer_port; /* zero: the port arrives failed, peer_node blamed */
} MeshResourceData;

typedef struct {
	MeshNodeId node;
	MeshPortId port;
	uint64_t seq_delta;
} MeshChangePeerData;

/* A parsed event pointing into the caller's buffer. */
typedef struct {
	MeshEventHeader header;
	const uint8_t *resources; /* header.resource_count records */
	const uint8_t *payload;   /* header.message_size bytes */
} MeshEventView;

/*
 * Parses and bounds-checks an event: sizes must add up exactly, the type
 * must be known, flags must fit the type, CHANGE_PEER and FAIL_PORT payloads
 * must have their fixed size, and only MESSAGE may carry resources.
 * Returns 0 or -EBADMSG.
 */
int protocol_event_parse(const uint8_t *data, size_t size, MeshEventView *ret);

/*
 * The exact size of the event at @data from its header, or 0 if @size is too
 * short for a header or the header's counts exceed the bounds. Large events
 * arrive in page-rounded memfds; the rest is padding.
 */
size_t protocol_event_size(const uint8_t *data, size_t size);

void protocol_event_read_resource(const MeshEventView *view, size_t index, MeshResourceData *ret);
void protocol_event_read_change_peer(const MeshEventView *view, MeshChangePeerData *ret);
void protocol_event_read_fail_port(const MeshEventView *view, MeshNodeId *ret);

/* Writers: @out must have room for the fixed sizes above. */
void protocol_event_write_header(uint8_t *out, const MeshEventHeader *header);
void protocol_event_write_resource(uint8_t *out, const MeshResourceData *resource);
void protocol_event_write_change_peer(uint8_t *out, const MeshChangePeerData *data);
void protocol_event_write_fail_port(uint8_t *out, const MeshNodeId *node);
