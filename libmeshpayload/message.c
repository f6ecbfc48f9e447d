/* SPDX-License-Identifier: MIT */
/* Walking the resources a message holds; the message helpers. */
#include <stdlib.h>
#include <unistd.h>

#include "meshpayload-private.h"

typedef void (*SlotVisitor)(const ProtobufCFieldDescriptor *field, ProtobufCMessage **slot,
			    void *data);

/* Calls @visit on every present (non-NULL) message-typed member of @msg. */
static void foreach_message_slot(ProtobufCMessage *msg, SlotVisitor visit, void *data)
{
	const ProtobufCMessageDescriptor *desc = msg->descriptor;

	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		char *member = (char *)msg + f->offset;
		const char *quant = (const char *)msg + f->quantifier_offset;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)quant;
			ProtobufCMessage **array = *(ProtobufCMessage ***)member;
			for (size_t j = 0; j < n; j++)
				if (array[j])
					visit(f, &array[j], data);
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)quant != f->id)
			continue;
		if (*(ProtobufCMessage **)member)
			visit(f, (ProtobufCMessage **)member, data);
	}
}

static void count_visit(const ProtobufCFieldDescriptor *f, ProtobufCMessage **slot, void *data)
{
	size_t *count = data;
	if (field_is_resource(f))
		(*count)++;
	else
		foreach_message_slot(*slot, count_visit, data);
}

size_t mesh_payload_count_resources(const ProtobufCMessage *msg)
{
	size_t count = 0;
	if (msg)
		foreach_message_slot((ProtobufCMessage *)msg, count_visit, &count);
	return count;
}

static void release_visit(const ProtobufCFieldDescriptor *f, ProtobufCMessage **slot, void *data)
{
	if (field_is_fd(f)) {
		MeshPayload__Fd *m = (MeshPayload__Fd *)*slot;
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
	} else if (field_is_port(f)) {
		MeshPayload__Port *m = (MeshPayload__Port *)*slot;
		mesh_payload_object_release((MeshPayloadObject *)(uintptr_t)m->handle);
		m->handle = 0;
	} else {
		foreach_message_slot(*slot, release_visit, data);
	}
}

void mesh_payload_message_release_resources(ProtobufCMessage *msg)
{
	if (!msg)
		return;
	int saved = errno;
	foreach_message_slot(msg, release_visit, NULL);
	errno = saved;
}

ProtobufCMessage *mesh_payload_message_free(ProtobufCMessage *msg)
{
	if (!msg)
		return NULL;
	mesh_payload_message_release_resources(msg);
	protobuf_c_message_free_unpacked(msg, NULL);
	return NULL;
}

bool mesh_payload_is_resource_type(const ProtobufCMessageDescriptor *desc)
{
	return desc == &mesh_payload__fd__descriptor || desc == &mesh_payload__port__descriptor;
}

MeshPayload__Fd *mesh_payload_fd_new_take(int fd)
{
	if (fd < 0) {
		errno = EBADF;
		return NULL;
	}
	MeshPayload__Fd *m = malloc(sizeof(*m));
	if (!m) {
		close(fd); /* consumed, also on failure */
		errno = ENOMEM;
		return NULL;
	}
	mesh_payload__fd__init(m);
	m->fd = fd;
	return m;
}

int mesh_payload_fd_steal(MeshPayload__Fd *fd_msg)
{
	if (!fd_msg)
		return -1;
	int fd = fd_msg->fd;
	fd_msg->fd = -1;
	return fd;
}

MeshPayload__Port *mesh_payload_port_new_take(MeshPayloadObject *object)
{
	if (!object) {
		errno = EINVAL;
		return NULL;
	}
	MeshPayload__Port *m = malloc(sizeof(*m));
	if (!m) {
		mesh_payload_object_release(object); /* consumed, also on failure */
		errno = ENOMEM;
		return NULL;
	}
	mesh_payload__port__init(m);
	m->handle = (uint64_t)(uintptr_t)object;
	return m;
}

MeshPayloadObject *mesh_payload_port_steal(MeshPayload__Port *port_msg)
{
	if (!port_msg)
		return NULL;
	MeshPayloadObject *object = (MeshPayloadObject *)(uintptr_t)port_msg->handle;
	port_msg->handle = 0;
	return object;
}
