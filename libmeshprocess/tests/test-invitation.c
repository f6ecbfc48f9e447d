/* SPDX-License-Identifier: MIT */
/*
 * The Windows host invitation's encoding (invitation-private.h): a round
 * trip, and every bad or hostile value refused with a message naming it.
 * Plain C: runs on Linux and under Wine.
 */
#include <check.h>
#include <string.h>

#include "invitation-private.h"

static void fill(ProcessWinInvitation *inv)
{
	memset(inv, 0, sizeof(*inv));
	inv->node_name = "worker-1";
	mesh_uuid_generate(&inv->host_node);
	mesh_uuid_generate(&inv->host_port);
	mesh_uuid_generate(&inv->parent_node);
	mesh_uuid_generate(&inv->parent_port);
	inv->directory = 0x1a4;
	for (int i = 0; i < PROCESS_WIN_SECRET_SIZE; i++)
		inv->secret[i] = (guint8)(i * 7 + 1);
}

/* Base64 of a hand-made WinInvitation from @inv with the given overrides. */
static char *encode_raw(const ProcessWinInvitation *inv, const guint8 *secret, gsize secret_len,
			gboolean with_address, const guint8 *node_id, gsize node_id_len,
			gboolean with_credentials)
{
	MeshProcess__WinInvitation w;
	MeshProcess__AlpcInvitationCredentials cred;
	MeshProcess__InvitationAddress addr;
	mesh_process__win_invitation__init(&w);
	mesh_process__alpc_invitation_credentials__init(&cred);
	mesh_process__invitation_address__init(&addr);
	addr.local_addr = process_address_new(&inv->host_node, &inv->host_port);
	addr.remote_addr = process_address_new(&inv->parent_node, &inv->parent_port);
	if (node_id) {
		memcpy(addr.local_addr->node->id->value.data, node_id, MIN(node_id_len, 16));
		addr.local_addr->node->id->value.len = node_id_len;
	}
	w.node_name = inv->node_name;
	w.credentials = with_credentials ? &cred : NULL;
	cred.address = with_address ? &addr : NULL;
	cred.mesh_secret.data = (guint8 *)secret;
	cred.mesh_secret.len = secret_len;
	w.directory_handle = inv->directory;
	gsize size = mesh_process__win_invitation__get_packed_size(&w);
	guint8 *bytes = g_malloc(size + 1);
	mesh_process__win_invitation__pack(&w, bytes);
	char *text = g_base64_encode(bytes, size);
	g_free(bytes);
	mesh_process__address__free_unpacked(addr.local_addr, NULL);
	mesh_process__address__free_unpacked(addr.remote_addr, NULL);
	return text;
}

static void assert_refused(const char *text, const char *words)
{
	ProcessWinInvitation out = { 0 };
	GError *error = NULL;
	ck_assert(!process_win_invitation_decode(text, &out, &error));
	ck_assert(error);
	ck_assert_msg(g_error_matches(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION),
		      "%s", error->message);
	ck_assert_msg(strstr(error->message, words), "'%s' does not say '%s'", error->message,
		      words);
	ck_assert(out.node_name == NULL);
	g_error_free(error);
}

/* @text decodes into @out, the same as @inv (fill()'s name and directory). */
static void expect_decodes_to(const char *text, const ProcessWinInvitation *inv,
			      ProcessWinInvitation *out)
{
	GError *error = NULL;
	ck_assert_msg(process_win_invitation_decode(text, out, &error), "%s",
		      error ? error->message : "");
	ck_assert_str_eq(out->node_name, "worker-1");
	ck_assert(mesh_uuid_equal(&out->host_node, &inv->host_node));
	ck_assert(mesh_uuid_equal(&out->host_port, &inv->host_port));
	ck_assert(mesh_uuid_equal(&out->parent_node, &inv->parent_node));
	ck_assert(mesh_uuid_equal(&out->parent_port, &inv->parent_port));
	ck_assert(out->directory == 0x1a4);
	ck_assert(memcmp(out->secret, inv->secret, PROCESS_WIN_SECRET_SIZE) == 0);
}

START_TEST(test_round_trip)
{
	ProcessWinInvitation inv, out = { 0 };
	GError *error = NULL;
	fill(&inv);
	char *text = process_win_invitation_encode(&inv);
	ck_assert(strlen(text) <= PROCESS_WIN_INVITATION_MAX);
	expect_decodes_to(text, &inv, &out);
	process_win_invitation_clear(&out);
	ck_assert(out.node_name == NULL);
	guint8 zero[PROCESS_WIN_SECRET_SIZE] = { 0 };
	ck_assert(memcmp(out.secret, zero, sizeof(zero)) == 0);
	process_win_invitation_clear(NULL);
	g_free(text);

	/* The largest handle value a kernel hands out (32-bit significant). */
	inv.directory = 0xfffffffc;
	text = process_win_invitation_encode(&inv);
	ck_assert(process_win_invitation_decode(text, &out, &error));
	ck_assert(out.directory == 0xfffffffc);
	process_win_invitation_clear(&out);
	g_free(text);
}
END_TEST

/* Fixed ids for the byte-exact check: id @tag's byte i is tag + i. */
static void fixed_id(MeshUuid *id, guint8 tag)
{
	for (int i = 0; i < 16; i++)
		id->bytes[i] = (guint8)(tag + i);
}

static void append(GByteArray *a, const guint8 *bytes, gsize n)
{
	g_byte_array_append(a, bytes, (guint)n);
}

/* mesh_node's Address { 1 node: NodeId { 1 Uuid { 1 [u8; 16] } },
 * 2 port: PortId { 1 Uuid { 1 [u8; 16] } } } as the field @key. */
static void append_address(GByteArray *a, guint8 key, const MeshUuid *node, const MeshUuid *port)
{
	static const guint8 id_head[] = { 0x0a, 0x14, 0x0a, 0x12, 0x0a, 0x10 };
	const guint8 head[] = { key, 0x2c }; /* 2 + 20 + 2 + 20 */
	append(a, head, sizeof(head));
	append(a, id_head, sizeof(id_head)); /* 1 node: NodeId(Uuid([u8; 16])) */
	append(a, node->bytes, 16);
	static const guint8 port_head[] = { 0x12, 0x14, 0x0a, 0x12, 0x0a, 0x10 };
	append(a, port_head, sizeof(port_head)); /* 2 port: PortId(Uuid([u8; 16])) */
	append(a, port->bytes, 16);
}

/*
 * Upstream's Windows invitation, built by hand from its Rust types
 * (microsoft/openvmm: mesh_process lib.rs `struct Invitation` under
 * cfg(windows), mesh_remote alpc_node.rs `InvitationCredentials` and
 * `MeshSecret`, mesh_node common.rs `Address`/`NodeId`/`PortId`/`Uuid`;
 * mesh_derive numbers fields from 1 in declaration order; [u8; 16] is
 * packed bytes; MeshSecret is transparent over ZeroCopyEncoding, a bytes
 * field; usize a varint):
 *   1 node_name "worker-1"
 *   2 credentials (128 bytes) {
 *     1 address: InvitationAddress (92 bytes) {
 *       1 local_addr (the host's), 2 remote_addr (the parent's) }
 *     2 mesh_secret: 32 bytes }
 *   3 directory_handle 0x1a4
 * Ours must be these bytes exactly, and these must decode.
 */
START_TEST(test_upstream_bytes)
{
	ProcessWinInvitation inv, out = { 0 };
	fill(&inv);
	fixed_id(&inv.host_node, 0x10);
	fixed_id(&inv.host_port, 0x20);
	fixed_id(&inv.parent_node, 0x30);
	fixed_id(&inv.parent_port, 0x40);

	GByteArray *want = g_byte_array_new();
	static const guint8 name[] = { 0x0a, 0x08, 'w', 'o', 'r', 'k', 'e', 'r', '-', '1' };
	append(want, name, sizeof(name));
	static const guint8 cred[] = { 0x12, 0x80, 0x01, /* 2 credentials, 128 bytes */
				       0x0a, 0x5c };	  /* 1 address, 92 bytes */
	append(want, cred, sizeof(cred));
	append_address(want, 0x0a, &inv.host_node, &inv.host_port);
	append_address(want, 0x12, &inv.parent_node, &inv.parent_port);
	static const guint8 secret_head[] = { 0x12, 0x20 }; /* 2 mesh_secret, 32 bytes */
	append(want, secret_head, sizeof(secret_head));
	append(want, inv.secret, PROCESS_WIN_SECRET_SIZE);
	static const guint8 dir[] = { 0x18, 0xa4, 0x03 }; /* 3 directory_handle, varint */
	append(want, dir, sizeof(dir));
	ck_assert_uint_eq(want->len, 144);

	char *text = process_win_invitation_encode(&inv);
	gsize size = 0;
	guchar *got = g_base64_decode(text, &size);
	ck_assert_uint_eq(size, want->len);
	for (gsize i = 0; i < size; i++)
		ck_assert_msg(got[i] == want->data[i], "byte %zu is 0x%02x, upstream's 0x%02x",
			      (size_t)i, got[i], want->data[i]);
	g_free(got);
	g_free(text);

	/* What a Rust parent sends decodes to the same. */
	text = g_base64_encode(want->data, want->len);
	expect_decodes_to(text, &inv, &out);
	process_win_invitation_clear(&out);
	g_free(text);
	g_byte_array_unref(want);
}
END_TEST

START_TEST(test_bad_text)
{
	assert_refused(NULL, "empty");
	assert_refused("", "empty");
	assert_refused("abc", "not base64");          /* length */
	assert_refused("ab$d", "not base64");         /* alphabet */
	assert_refused("a=bc", "not base64");         /* padding inside */
	assert_refused("a===", "not base64");         /* three pads */
	assert_refused("YWJj ZGVm", "not base64");    /* white space */
	char *huge = g_strnfill(PROCESS_WIN_INVITATION_MAX + 4, 'A');
	assert_refused(huge, "longer than 1024");
	g_free(huge);
	/* Base64 of bytes that are not a WinInvitation (a truncated varint). */
	assert_refused("GP8=", "not a WinInvitation");
	/* Valid base64 of an empty message: no name. */
	assert_refused("AA==", "not a WinInvitation");
}
END_TEST

START_TEST(test_bad_fields)
{
	ProcessWinInvitation inv;
	guint8 secret[64];
	memset(secret, 0x5a, sizeof(secret));
	char *t;

	fill(&inv);
	inv.node_name = "";
	t = process_win_invitation_encode(&inv);
	assert_refused(t, "node name");
	g_free(t);
	inv.node_name = "a\nb";
	t = process_win_invitation_encode(&inv);
	assert_refused(t, "node name");
	g_free(t);
	inv.node_name = "\xff\xfe"; /* refused by the protobuf decoder already */
	t = process_win_invitation_encode(&inv);
	assert_refused(t, "invalid UTF-8");
	g_free(t);
	char *long_name = g_strnfill(PROCESS_WIN_NAME_MAX + 1, 'n');
	inv.node_name = long_name;
	t = process_win_invitation_encode(&inv);
	assert_refused(t, "node name");
	g_free(t);
	g_free(long_name);

	fill(&inv);
	t = encode_raw(&inv, secret, 32, FALSE, NULL, 0, TRUE);
	assert_refused(t, "address");
	g_free(t);
	guint8 id15[15] = { 1 };
	t = encode_raw(&inv, secret, 32, TRUE, id15, sizeof(id15), TRUE);
	assert_refused(t, "address");
	g_free(t);
	t = encode_raw(&inv, secret, 32, TRUE, NULL, 0, FALSE);
	assert_refused(t, "missing credentials");
	g_free(t);

	fill(&inv);
	memset(&inv.host_port, 0, sizeof(inv.host_port));
	t = process_win_invitation_encode(&inv);
	assert_refused(t, "id is zero");
	g_free(t);
	fill(&inv);
	inv.host_node = inv.parent_node;
	t = process_win_invitation_encode(&inv);
	assert_refused(t, "the parent's");
	g_free(t);

	static const guint64 bad_handles[] = { 0, 0x1a5, 0x1a6, 0x100000000ull,
					       G_MAXUINT64, /* INVALID_HANDLE_VALUE, -1 */
					       G_MAXUINT64 - 1 /* the current thread's pseudo-handle */ };
	for (gsize i = 0; i < G_N_ELEMENTS(bad_handles); i++) {
		fill(&inv);
		inv.directory = bad_handles[i];
		t = process_win_invitation_encode(&inv);
		assert_refused(t, "directory handle");
		g_free(t);
	}

	fill(&inv);
	t = encode_raw(&inv, secret, 31, TRUE, NULL, 0, TRUE);
	assert_refused(t, "the secret is 31 bytes");
	g_free(t);
	t = encode_raw(&inv, secret, 33, TRUE, NULL, 0, TRUE);
	assert_refused(t, "the secret is 33 bytes");
	g_free(t);
	t = encode_raw(&inv, secret, 0, TRUE, NULL, 0, TRUE);
	assert_refused(t, "the secret is 0 bytes");
	g_free(t);
	memset(inv.secret, 0, sizeof(inv.secret));
	t = process_win_invitation_encode(&inv);
	assert_refused(t, "all zero");
	g_free(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("invitation");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_upstream_bytes);
	tcase_add_test(tc, test_bad_text);
	tcase_add_test(tc, test_bad_fields);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
