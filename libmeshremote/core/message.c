/* SPDX-License-Identifier: MIT */
/* MeshMessage: typed (unencoded) or bytes + resources, and channel framing. */
#include <errno.h>
#ifndef _WIN32
#include <fcntl.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "os-private.h"
#include "remote-private.h"
#include "wire-private.h"

MeshMessage *message_new_bytes_take(uint8_t *data, size_t size, MeshPayloadResources *res,
				    MeshWrap wrap)
{
	MeshMessage *msg = g_new0(MeshMessage, 1);
	msg->data = data;
	msg->size = size;
	msg->res = res;
	msg->wrap = wrap;
	msg->fds_private = res == NULL;
	return msg;
}

static void inline_data_keep(gpointer owner)
{
	/* The bytes live in the message's own block, freed with it. */
}

MeshMessage *message_new_bytes_copy(const void *data, size_t size, MeshPayloadResources *res,
				    MeshWrap wrap)
{
	/* One block for the message and its bytes (read-only, like a mapping). */
	gboolean small = sizeof(MeshMessage) + size <= SMALL_BLOCK_SIZE;
	MeshMessage *msg = small ? small_block_alloc() : g_malloc(sizeof(MeshMessage) + size);
	memset(msg, 0, sizeof(MeshMessage));
	msg->small_block = small;
	if (size) {
		msg->data = (uint8_t *)(msg + 1);
		memcpy(msg->data, data, size);
		msg->data_free = inline_data_keep;
	}
	msg->size = size;
	msg->res = res;
	msg->wrap = wrap;
	msg->fds_private = res == NULL;
	return msg;
}

MeshMessage *mesh_message_new(const void *data, size_t size)
{
	g_return_val_if_fail(data || size == 0, NULL);
	return message_new_bytes_copy(data, size, NULL, MESH_WRAP_NONE);
}

MeshMessage *mesh_message_new_from_bytes(GBytes *bytes)
{
	g_return_val_if_fail(bytes != NULL, NULL);
	gsize size;
	const void *data = g_bytes_get_data(bytes, &size);
	MeshMessage *msg = message_new_bytes_take(NULL, size, NULL, MESH_WRAP_NONE);
	if (size) {
		/* Read-only, like a mapping: released with the message. */
		msg->data = (uint8_t *)data;
		msg->data_free = (GDestroyNotify)g_bytes_unref;
		msg->data_owner = g_bytes_ref(bytes);
	}
	return msg;
}

MeshMessage *mesh_message_new_typed_take(ProtobufCMessage *typed)
{
	g_return_val_if_fail(typed != NULL, NULL);
	MeshMessage *msg = g_new0(MeshMessage, 1);
	msg->typed = typed;
	return msg;
}

/* Releases the bytes: freed, or given back to the memory they live in. */
static void message_data_release(MeshMessage *msg)
{
	if (msg->data_free)
		msg->data_free(msg->data_owner);
	else
		g_free(msg->data);
	msg->data = NULL;
	msg->data_free = NULL;
	msg->data_owner = NULL;
}

/* Takes the borrowed fds out of the list unclosed: they are the application's. */
static void message_drop_borrowed(MeshMessage *msg)
{
	for (size_t i = 0; i < 64 && msg->borrowed; i++) {
		if (msg->borrowed & (G_GUINT64_CONSTANT(1) << i))
			(void)mesh_payload_resources_steal_fd(msg->res, i);
		msg->borrowed &= ~(G_GUINT64_CONSTANT(1) << i);
	}
}

int message_own_fds(MeshMessage *msg)
{
#ifndef G_OS_WIN32 /* elsewhere nothing is borrowed */
	/*
	 * All looked at first (the add does not): a duplicate made in the
	 * loop below could take the number of a lent fd that is closed, and
	 * the next duplicate would copy the wrong file.
	 */
	for (size_t i = 0; i < 64 && (msg->borrowed >> i); i++) {
		guint64 bit = G_GUINT64_CONSTANT(1) << i;
		if ((msg->borrowed & bit) &&
		    !os_fd_is_open(mesh_payload_resources_peek_fd(msg->res, i)))
			return -EBADF;
	}
	for (size_t i = 0; i < 64 && msg->borrowed; i++) {
		guint64 bit = G_GUINT64_CONSTANT(1) << i;
		int fd = msg->borrowed & bit ? mesh_payload_resources_peek_fd(msg->res, i) : -1;
		if (fd >= 0) {
			int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
			if (dup < 0)
				return -errno;
			(void)mesh_payload_resources_replace_fd(msg->res, i, dup);
		}
		msg->borrowed &= ~bit;
	}
#endif
	return 0;
}

GError *message_own_fds_error(int r)
{
	return g_error_new(MESH_ERROR, MESH_ERROR_INVALID_ARGUMENT,
			   "a borrowed fd of the message could not be duplicated: %s",
			   g_strerror(-r));
}

void mesh_message_free(MeshMessage *msg)
{
	if (!msg)
		return;
	if (msg->borrowed)
		message_drop_borrowed(msg);
	mesh_payload_message_free(msg->typed);
	message_data_release(msg);
	mesh_payload_resources_free(msg->res);
	if (msg->small_block)
		small_block_free(msg);
	else
		g_free(msg);
}

static MeshPayloadResources *message_res(MeshMessage *msg)
{
	if (!msg->res)
		msg->res = mesh_payload_resources_new();
	return msg->res;
}

int message_ensure_bytes(MeshMessage *msg, GError **error)
{
	MeshPayloadError err;
	uint8_t *data;
	size_t size;

	if (!msg->typed)
		return 0;
	int r = mesh_payload_encode_alloc(msg->typed, &data, &size, message_res(msg), &err);
	if (r < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "%s", err.message);
		return r;
	}
	mesh_payload_message_free(msg->typed); /* its resources moved out */
	msg->typed = NULL;
	message_data_release(msg);
	msg->data = data;
	msg->size = size;
	return 0;
}

int mesh_message_add_fd_take(MeshMessage *msg, int fd)
{
	g_return_val_if_fail(msg && !msg->typed, -EINVAL);
	/* Not open: refused now, not when a transport cannot send it. */
	if (!os_fd_is_open(fd))
		return -EBADF;
	msg->fds_private = FALSE; /* the caller knows this fd's number */
	return mesh_payload_resources_append_fd_take(message_res(msg), fd);
}

int mesh_message_add_fd(MeshMessage *msg, int fd)
{
	g_return_val_if_fail(msg && !msg->typed, -EINVAL);
	if (fd < 0)
		return -EBADF;
	/* The duplicate fails with EBADF on an fd that is not open. */
	return mesh_payload_resources_append_fd(message_res(msg), fd);
}

int mesh_message_add_fd_borrowed(MeshMessage *msg, int fd)
{
	g_return_val_if_fail(msg && !msg->typed, -EINVAL);
	if (fd < 0)
		return -EBADF;
#ifdef G_OS_WIN32
	/* A descriptor's handle leaves as a duplicate anyway (os_resource_steal()). */
	return mesh_message_add_fd(msg, fd);
#else
	size_t index = mesh_message_get_n_resources(msg);
	if (index >= 64)
		return mesh_message_add_fd(msg, fd); /* past the mask: lent as a duplicate */
	/*
	 * Not checked here: an fd that is not open is found where it is used
	 * (the send's sendmsg() or message_fits(), or a duplicate), which
	 * fails the sending port; a check here was a system call per send.
	 */
	int r = mesh_payload_resources_append_fd_take(message_res(msg), fd);
	if (r < 0) /* only ENOMEM, which closed the caller's fd: as GLib does */
		g_error("mesh_message_add_fd_borrowed: %s", g_strerror(-r));
	/* fds_private stays: a lent fd is checked apart (the borrowed bit). */
	msg->borrowed |= G_GUINT64_CONSTANT(1) << r;
	return r;
#endif
}

int mesh_message_add_port_take(MeshMessage *msg, MeshPort *port)
{
	g_return_val_if_fail(msg && !msg->typed && port, -EINVAL);
	return mesh_payload_resources_append_port_take(message_res(msg), &port->object);
}

const uint8_t *mesh_message_get_data(MeshMessage *msg, size_t *ret_size)
{
	g_return_val_if_fail(msg && ret_size, NULL);
	if (message_ensure_bytes(msg, NULL) < 0) {
		*ret_size = 0;
		return NULL;
	}
	static const uint8_t empty[1];
	*ret_size = msg->size;
	return msg->data ? msg->data : empty; /* never NULL: callers do pointer arithmetic */
}

guint mesh_message_get_n_resources(MeshMessage *msg)
{
	g_return_val_if_fail(msg, 0);
	return msg->res ? (guint)mesh_payload_resources_len(msg->res) : 0;
}

int mesh_message_steal_fd(MeshMessage *msg, guint index)
{
	g_return_val_if_fail(msg, -EINVAL);
#ifndef G_OS_WIN32
	if (index < 64 && (msg->borrowed & (G_GUINT64_CONSTANT(1) << index))) {
		/* The caller's own fd: what it steals is a duplicate. */
		int fd = mesh_payload_resources_steal_fd(msg->res, index);
		msg->borrowed &= ~(G_GUINT64_CONSTANT(1) << index);
		int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		return dup < 0 ? -errno : dup;
	}
#endif
	return msg->res ? os_resource_steal_fd(msg->res, index) : -EINVAL;
}

#ifdef G_OS_WIN32
int mesh_message_add_handle(MeshMessage *msg, MeshOsHandle handle)
{
	g_return_val_if_fail(msg && !msg->typed, -EINVAL);
	return mesh_payload_resources_append_handle(message_res(msg), handle);
}

int mesh_message_add_handle_take(MeshMessage *msg, MeshOsHandle handle)
{
	g_return_val_if_fail(msg && !msg->typed, -EINVAL);
	/* Not valid: refused now, not when a transport cannot send it. */
	if (!os_handle_is_open(handle))
		return -EBADF;
	msg->fds_private = FALSE; /* the caller knows this handle */
	return mesh_payload_resources_append_handle_take(message_res(msg), handle);
}

MeshOsHandle mesh_message_steal_handle(MeshMessage *msg, guint index)
{
	g_return_val_if_fail(msg, MESH_OS_HANDLE_INVALID);
	return msg->res ? mesh_payload_resources_steal_handle(msg->res, index)
			: MESH_OS_HANDLE_INVALID;
}
#endif

MeshPort *mesh_message_steal_port(MeshMessage *msg, guint index)
{
	g_return_val_if_fail(msg, NULL);
	if (!msg->res)
		return NULL;
	return mesh_port_from_object(mesh_payload_resources_steal_port(msg->res, index));
}

ProtobufCMessage *mesh_message_into_typed(MeshMessage *msg, const ProtobufCMessageDescriptor *desc,
					  GError **error)
{
	ProtobufCMessage *typed = NULL;
	MeshPayloadError err;

	if (!desc || (error && *error)) {
		mesh_message_free(msg); /* consumed, as on any failure */
		g_return_val_if_fail(desc && (error == NULL || *error == NULL), NULL);
	}
	g_return_val_if_fail(msg, NULL);
	if (msg->typed && msg->typed->descriptor == desc) {
		typed = msg->typed;
		msg->typed = NULL;
		mesh_message_free(msg);
		return typed;
	}
	if (message_ensure_bytes(msg, error) < 0) {
		mesh_message_free(msg);
		return NULL;
	}
	/* The decoded message owns its fds. */
	int own = message_own_fds(msg);
	if (own < 0) {
		g_propagate_error(error, message_own_fds_error(own));
		mesh_message_free(msg);
		return NULL;
	}
	if (mesh_payload_decode(desc, msg->data, msg->size, msg->res, NULL, &typed, &err) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "%s", err.message);
		typed = NULL;
	}
	mesh_message_free(msg);
	return typed;
}

int message_wire_framing(MeshMessage *msg, uint8_t head[24], size_t *ret_head_len,
			 GError **error)
{
	int r = message_ensure_bytes(msg, error);
	size_t k = 0;

	if (r < 0)
		return r;
	switch (msg->wrap) {
	case MESH_WRAP_FIELD1: {
		size_t n = mesh_message_get_n_resources(msg);
		if (n == 0) {
			head[k++] = WIRE_KEY1(1, WIRE_LEN);
		} else {
			head[k++] = WIRE_KEY1(1, WIRE_MESH_MESSAGE);
			k += wire_put_varint(head + k, n);
		}
		k += wire_put_varint(head + k, msg->size);
		break;
	}
	case MESH_WRAP_PORT:
		head[k++] = WIRE_KEY1(2, WIRE_RESOURCE);
		break;
	default:
		break;
	}
	*ret_head_len = k;
	return 0;
}

/*
 * The framing is exact: one of the three keys (in one byte), then for field
 * 1 its resource count (which must be the message's) and a length that
 * covers the rest of the bytes; for field 2 nothing else.
 */
int message_unwrap_channel(MeshMessage *msg, GError **error)
{
	size_t n_res = mesh_message_get_n_resources(msg);
	WireReader r = {msg->data, msg->data ? msg->data + msg->size : NULL};
	WireField f;

	if (msg->wrap != MESH_WRAP_WIRE)
		return 0;
	if (msg->size == 0 && n_res == 0) {
		msg->wrap = MESH_WRAP_FIELD1; /* field 1 omitted: an empty value */
		return 0;
	}
	uint8_t key = msg->size ? *r.p++ : 0;
	switch (key) {
	case WIRE_KEY1(1, WIRE_LEN):
	case WIRE_KEY1(1, WIRE_MESH_MESSAGE):
		if (wire_read_payload(&r, key & 7, &f) != WIRE_OK || f.n_res != n_res ||
		    r.p != r.end)
			break;
		if (msg->data_free)
			msg->data = (uint8_t *)f.data; /* read-only memory: look past the framing */
		else
			memmove(msg->data, f.data, f.size);
		msg->size = f.size;
		msg->wrap = MESH_WRAP_FIELD1;
		return 0;
	case WIRE_KEY1(2, WIRE_RESOURCE):
		if (r.p != r.end || n_res != 1 ||
		    mesh_payload_resources_get_kind(msg->res, 0) != MESH_PAYLOAD_RESOURCE_PORT)
			break;
		msg->size = 0;
		msg->wrap = MESH_WRAP_PORT;
		return 0;
	default:
		break;
	}
	g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "malformed channel payload");
	return -EBADMSG;
}
