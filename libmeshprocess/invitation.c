/* SPDX-License-Identifier: MIT */
/* The Windows host invitation: invitation-private.h says what it holds and what is refused. */
#include <string.h>

#include "invitation-private.h"

static void set_id(MeshProcess__Address **slot, const MeshUuid *node, const MeshUuid *port)
{
	*slot = process_address_new(node, port);
}

char *process_win_invitation_encode(const ProcessWinInvitation *inv)
{
	MeshProcess__WinInvitation w;
	MeshProcess__AlpcInvitationCredentials cred;
	MeshProcess__InvitationAddress addr;

	mesh_process__win_invitation__init(&w);
	mesh_process__alpc_invitation_credentials__init(&cred);
	mesh_process__invitation_address__init(&addr);
	set_id(&addr.local_addr, &inv->host_node, &inv->host_port);
	set_id(&addr.remote_addr, &inv->parent_node, &inv->parent_port);
	w.node_name = inv->node_name;
	w.credentials = &cred;
	cred.address = &addr;
	cred.mesh_secret.data = (guint8 *)inv->secret;
	cred.mesh_secret.len = PROCESS_WIN_SECRET_SIZE;
	w.directory_handle = inv->directory;

	gsize size = mesh_process__win_invitation__get_packed_size(&w);
	guint8 *bytes = g_malloc(size ? size : 1);
	mesh_process__win_invitation__pack(&w, bytes);
	char *text = g_base64_encode(bytes, size);
	memset(bytes, 0, size); /* the secret */
	g_free(bytes);
	/* process_address_new()'s, freed the way protobuf-c would. */
	mesh_process__address__free_unpacked(addr.local_addr, NULL);
	mesh_process__address__free_unpacked(addr.remote_addr, NULL);
	return text;
}

static gboolean fail(GError **error, const char *what)
{
	g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
		    "invalid " MESH_WORKER_INVITATION ": %s", what);
	return FALSE;
}

static gboolean is_base64(const char *s, gsize len)
{
	if (len == 0 || len % 4 != 0)
		return FALSE;
	gsize pad = 0;
	for (gsize i = 0; i < len; i++) {
		char c = s[i];
		if (c == '=') {
			pad++;
			continue;
		}
		if (pad || !(g_ascii_isalnum(c) || c == '+' || c == '/'))
			return FALSE; /* padding only at the end */
	}
	return pad <= 2;
}

static gboolean name_ok(const char *name)
{
	if (!name || !*name || strlen(name) > PROCESS_WIN_NAME_MAX ||
	    !g_utf8_validate(name, -1, NULL))
		return FALSE;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return FALSE;
	return TRUE;
}

static gboolean nonzero(const guint8 *b, gsize n)
{
	guint8 acc = 0;
	for (gsize i = 0; i < n; i++)
		acc |= b[i];
	return acc != 0;
}

gboolean process_win_invitation_decode(const char *text, ProcessWinInvitation *ret,
				       GError **error)
{
	g_return_val_if_fail(ret, FALSE);
	if (!text || !*text)
		return fail(error, "empty");
	gsize len = strlen(text);
	if (len > PROCESS_WIN_INVITATION_MAX)
		return fail(error, "longer than 1024 characters");
	if (!is_base64(text, len))
		return fail(error, "not base64");

	gsize size = 0;
	guchar *bytes = g_base64_decode(text, &size);
	ProtobufCMessage *msg = NULL;
	MeshPayloadError perr;
	int r = mesh_payload_decode(&mesh_process__win_invitation__descriptor, bytes, size, NULL,
				    NULL, &msg, &perr);
	memset(bytes, 0, size);
	g_free(bytes);
	if (r < 0) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invalid " MESH_WORKER_INVITATION ": not a WinInvitation: %s",
			    perr.message);
		return FALSE;
	}
	MeshProcess__WinInvitation *w = (MeshProcess__WinInvitation *)msg;
	MeshProcess__AlpcInvitationCredentials *c = w->credentials;
	ProcessWinInvitation inv = { 0 };
	gboolean ok = FALSE;

	if (!name_ok(w->node_name)) {
		fail(error, "the node name is empty, too long, not UTF-8 or has a control character");
	} else if (!c) {
		fail(error, "missing credentials (address and secret)");
	} else if (!c->address ||
		   !process_address_read(c->address->local_addr, &inv.host_node, &inv.host_port) ||
		   !process_address_read(c->address->remote_addr, &inv.parent_node,
					 &inv.parent_port)) {
		fail(error, "missing or malformed address (each id must be 16 bytes)");
	} else if (mesh_uuid_is_zero(&inv.host_node) || mesh_uuid_is_zero(&inv.host_port) ||
		   mesh_uuid_is_zero(&inv.parent_node) || mesh_uuid_is_zero(&inv.parent_port)) {
		fail(error, "a node or port id is zero");
	} else if (mesh_uuid_equal(&inv.host_node, &inv.parent_node)) {
		fail(error, "the host's node id is the parent's");
	} else if (w->directory_handle == 0 || (w->directory_handle & 3) != 0 ||
		   w->directory_handle > G_MAXUINT32) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invalid " MESH_WORKER_INVITATION
			    ": directory handle 0x%" G_GINT64_MODIFIER "x is not a handle value "
			    "(nonzero, a multiple of 4, below 2^32)",
			    (guint64)w->directory_handle);
	} else if (c->mesh_secret.len != PROCESS_WIN_SECRET_SIZE) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "invalid " MESH_WORKER_INVITATION ": the secret is %" G_GSIZE_FORMAT
			    " bytes, not %d",
			    (gsize)c->mesh_secret.len, PROCESS_WIN_SECRET_SIZE);
	} else if (!nonzero(c->mesh_secret.data, c->mesh_secret.len)) {
		fail(error, "the secret is all zero");
	} else {
		ok = TRUE;
	}
	if (ok) {
		inv.node_name = g_strdup(w->node_name);
		inv.directory = w->directory_handle;
		memcpy(inv.secret, c->mesh_secret.data, PROCESS_WIN_SECRET_SIZE);
		*ret = inv;
	}
	if (c && c->mesh_secret.data)
		memset(c->mesh_secret.data, 0, c->mesh_secret.len);
	mesh_payload_message_free(msg);
	return ok;
}

void process_win_invitation_clear(ProcessWinInvitation *inv)
{
	if (!inv)
		return;
	g_clear_pointer(&inv->node_name, g_free);
	memset(inv->secret, 0, sizeof(inv->secret));
}
