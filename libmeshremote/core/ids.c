/* SPDX-License-Identifier: MIT */
/* Node and port ids: random 16-byte uuids, their text form and hashing. */
#include <string.h>

#include "os-private.h"
#include "remote-private.h"

void mesh_uuid_generate(MeshUuid *ret)
{
	g_return_if_fail(ret);
	os_random(ret->bytes, sizeof(ret->bytes));
}

gboolean mesh_uuid_is_zero(const MeshUuid *id)
{
	g_return_val_if_fail(id, FALSE);
	for (size_t i = 0; i < sizeof(id->bytes); i++)
		if (id->bytes[i])
			return FALSE;
	return TRUE;
}

const char *mesh_uuid_to_string(const MeshUuid *id, char buf[33])
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, k = 0;

	g_return_val_if_fail(id && buf, NULL);
	while (i < 16 && id->bytes[i] == 0)
		i++;
	if (i == 16) {
		buf[0] = '0';
		buf[1] = '\0';
		return buf;
	}
	if (id->bytes[i] < 0x10) {
		buf[k++] = hex[id->bytes[i] & 0xf];
		i++;
	}
	for (; i < 16; i++) {
		buf[k++] = hex[id->bytes[i] >> 4];
		buf[k++] = hex[id->bytes[i] & 0xf];
	}
	buf[k] = '\0';
	return buf;
}

guint mesh_uuid_hash(gconstpointer key)
{
	const MeshUuid *id = key;
	guint h;
	memcpy(&h, id->bytes, sizeof(h)); /* ids are random */
	return h;
}

gboolean mesh_uuid_equal(gconstpointer a, gconstpointer b)
{
	return memcmp(a, b, sizeof(MeshUuid)) == 0;
}
