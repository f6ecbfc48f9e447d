/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "protocol-private.h"

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

int protocol_event_parse(const uint8_t *data, size_t size, MeshEventView *ret)
{
	MeshEventHeader h;

	if (size < MESH_EVENT_HEADER_SIZE)
		return -EBADMSG;
	memcpy(h.port_id.bytes, data, 16);
	h.type = data[16];
	h.flags = data[17];
	h.seq = get_le64(data + 24);
	h.resource_count = get_le32(data + 32);
	h.message_size = get_le32(data + 36);

	if (h.resource_count > MESH_EVENT_MAX_RESOURCES || h.message_size > MESH_EVENT_MAX_MESSAGE_SIZE)
		return -EBADMSG;
	size_t need = MESH_EVENT_HEADER_SIZE + (size_t)h.resource_count * MESH_RESOURCE_DATA_SIZE +
		      h.message_size;
	if (size != need)
		return -EBADMSG;

	switch (h.type) {
	case MESH_EVENT_MESSAGE:
		if (h.flags & ~(MESH_EVENT_FLAG_MESSAGE | MESH_EVENT_FLAG_CLOSE))
			return -EBADMSG;
		if (!(h.flags & MESH_EVENT_FLAG_MESSAGE) && (h.message_size || h.resource_count))
			return -EBADMSG;
		break;
	case MESH_EVENT_CHANGE_PEER:
		if ((h.flags & ~MESH_EVENT_FLAG_FORWARDS) || h.resource_count ||
		    h.message_size != MESH_CHANGE_PEER_DATA_SIZE)
			return -EBADMSG;
		break;
	case MESH_EVENT_FAIL_PORT:
		if (h.flags || h.resource_count || h.message_size != MESH_FAIL_PORT_DATA_SIZE)
			return -EBADMSG;
		break;
	case MESH_EVENT_ACK_CHANGE_PEER:
	case MESH_EVENT_ACK_PORT:
	case MESH_EVENT_PROXY_DONE:
		if (h.flags || h.resource_count || h.message_size)
			return -EBADMSG;
		break;
	default:
		return -EBADMSG;
	}

	ret->header = h;
	ret->resources = data + MESH_EVENT_HEADER_SIZE;
	ret->payload = ret->resources + (size_t)h.resource_count * MESH_RESOURCE_DATA_SIZE;
	return 0;
}

size_t protocol_event_size(const uint8_t *data, size_t size)
{
	if (size < MESH_EVENT_HEADER_SIZE)
		return 0;
	uint32_t count = get_le32(data + 32), message_size = get_le32(data + 36);
	if (count > MESH_EVENT_MAX_RESOURCES || message_size > MESH_EVENT_MAX_MESSAGE_SIZE)
		return 0;
	return MESH_EVENT_HEADER_SIZE + (size_t)count * MESH_RESOURCE_DATA_SIZE + message_size;
}

void protocol_event_read_resource(const MeshEventView *view, size_t index, MeshResourceData *ret)
{
	const uint8_t *p = view->resources + index * MESH_RESOURCE_DATA_SIZE;

	memcpy(ret->id.bytes, p, 16);
	ret->next_local_seq = get_le64(p + 16);
	memcpy(ret->old_node.bytes, p + 32, 16);
	memcpy(ret->old_port.bytes, p + 48, 16);
	memcpy(ret->peer_node.bytes, p + 64, 16);
	memcpy(ret->peer_port.bytes, p + 80, 16);
}

void protocol_event_read_change_peer(const MeshEventView *view, MeshChangePeerData *ret)
{
	memcpy(ret->node.bytes, view->payload, 16);
	memcpy(ret->port.bytes, view->payload + 16, 16);
	ret->seq_delta = get_le64(view->payload + 32);
}

void protocol_event_read_fail_port(const MeshEventView *view, MeshNodeId *ret)
{
	memcpy(ret->bytes, view->payload, 16);
}

void protocol_event_write_header(uint8_t *out, const MeshEventHeader *h)
{
	memcpy(out, h->port_id.bytes, 16);
	out[16] = h->type;
	out[17] = h->flags;
	memset(out + 18, 0, 6);
	put_le64(out + 24, h->seq);
	put_le32(out + 32, h->resource_count);
	put_le32(out + 36, h->message_size);
}

void protocol_event_write_resource(uint8_t *out, const MeshResourceData *r)
{
	memcpy(out, r->id.bytes, 16);
	put_le64(out + 16, r->next_local_seq);
	memset(out + 24, 0, 8);
	memcpy(out + 32, r->old_node.bytes, 16);
	memcpy(out + 48, r->old_port.bytes, 16);
	memcpy(out + 64, r->peer_node.bytes, 16);
	memcpy(out + 80, r->peer_port.bytes, 16);
}

void protocol_event_write_change_peer(uint8_t *out, const MeshChangePeerData *d)
{
	memcpy(out, d->node.bytes, 16);
	memcpy(out + 16, d->port.bytes, 16);
	put_le64(out + 32, d->seq_delta);
	memset(out + 40, 0, 8);
}

void protocol_event_write_fail_port(uint8_t *out, const MeshNodeId *node)
{
	memcpy(out, node->bytes, 16);
}
