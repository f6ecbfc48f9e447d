/* SPDX-License-Identifier: MIT */
/*
 * mesh_alpc_node_invite() and mesh_alpc_node_cancel_invite(), two nodes in
 * this process on the NtAlpc stand-in (TEST DOUBLE: alpc-standin.h; with
 * MESH_ALPC_TEST_REAL=1 on Windows, on ntdll's ALPC). The invited node is
 * made only after the inviter has sent to it: without the invitation the
 * inviter's connection to the missing port fails the node at once.
 */
#include <check.h>
#include <string.h>

#include "alpc-node-private.h"
#include "alpc-standin.h"

static const MeshAlpcNtApi *test_api(void)
{
	const char *missing = NULL;
	const MeshAlpcNtApi *api;

	if (!g_getenv("MESH_ALPC_TEST_REAL"))
		return alpc_standin_api();
	api = alpc_nt_api_ntdll(&missing);
	ck_assert_msg(api, "MESH_ALPC_TEST_REAL is set, but ntdll has no %s", missing);
	return api;
}

static HANDLE dup_handle(HANDLE h)
{
	HANDLE out = NULL;
	ck_assert(DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &out, 0, FALSE,
				  DUPLICATE_SAME_ACCESS));
	return out;
}

typedef struct {
	HANDLE dir;
	guint8 secret[MESH_ALPC_SECRET_SIZE];
	MeshAlpcNode *a;
	MeshNodeId b_id;
	MeshPortId pa, pb;
	MeshSender *send; /* a's, to the port pb on b */
} Setup;

static void setup(Setup *s, gboolean invite)
{
	OBJECT_ATTRIBUTES oa = { .Length = sizeof(oa) };
	char ns[64];
	GError *error = NULL;

	g_snprintf(ns, sizeof(ns), "inv%lu-%lu", GetCurrentProcessId(), GetTickCount());
	SetEnvironmentVariableA("MESH_ALPC_STANDIN_NS", ns);
	ck_assert(NT_SUCCESS(test_api()->create_directory_object(
		&s->dir, STANDARD_RIGHTS_REQUIRED | 0xF, &oa)));
	mesh_uuid_generate((MeshUuid *)s->secret);
	mesh_uuid_generate((MeshUuid *)(s->secret + 16));
	s->a = alpc_node_new_full(test_api(), dup_handle(s->dir), NULL, s->secret, &error);
	ck_assert_msg(s->a, "%s", error ? error->message : "");
	mesh_uuid_generate(&s->b_id);
	mesh_uuid_generate(&s->pa);
	mesh_uuid_generate(&s->pb);
	if (invite)
		mesh_alpc_node_invite(s->a, &s->b_id);
	s->send = mesh_sender_from_port(
		mesh_node_add_port(mesh_alpc_node_get_node(s->a), &s->pa, &s->b_id, &s->pb), NULL);
	mesh_sender_send_message(s->send, mesh_message_new("early", 5));
}

static MeshAlpcNode *join_b(Setup *s, MeshReceiver **ret_recv)
{
	GError *error = NULL;
	MeshAlpcNode *b =
		alpc_node_new_full(test_api(), dup_handle(s->dir), &s->b_id, s->secret, &error);
	ck_assert_msg(b, "%s", error ? error->message : "");
	*ret_recv = mesh_receiver_from_port(
		mesh_node_add_port(mesh_alpc_node_get_node(b), &s->pb,
				   mesh_node_get_id(mesh_alpc_node_get_node(s->a)), &s->pa),
		NULL);
	return b;
}

static void teardown(Setup *s)
{
	mesh_sender_free(s->send);
	mesh_alpc_node_shutdown(s->a, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_free(s->a);
	CloseHandle(s->dir);
}

/* Sent before the invited node existed: it arrives once the node joined. */
START_TEST(test_invite_holds_connection)
{
	Setup s = { 0 };
	MeshReceiver *recv;
	MeshMessage *msg = NULL;
	GError *error = NULL;

	setup(&s, TRUE);
	Sleep(200); /* the connect thread would have tried by now without the invitation */
	MeshAlpcNode *b = join_b(&s, &recv);
	ck_assert_msg(mesh_receiver_recv_message(recv, 30 * G_USEC_PER_SEC, &msg, &error), "%s",
		      error ? error->message : "");
	size_t size;
	const guint8 *data = mesh_message_get_data(msg, &size);
	ck_assert(size == 5 && memcmp(data, "early", 5) == 0);
	mesh_message_free(msg);
	/* And later ones, over the connection made after b connected. */
	mesh_sender_send_message(s.send, mesh_message_new("later", 5));
	ck_assert(mesh_receiver_recv_message(recv, 30 * G_USEC_PER_SEC, &msg, &error));
	mesh_message_free(msg);
	mesh_receiver_free(recv);
	mesh_alpc_node_shutdown(b, 5 * G_USEC_PER_SEC);
	mesh_alpc_node_free(b);
	teardown(&s);
}
END_TEST

/* The control: without the invitation the same sequence fails the node. */
START_TEST(test_without_invite_fails)
{
	Setup s = { 0 };
	MeshReceiver *back_recv;
	MeshSender *back_send;
	MeshMessage *msg = NULL;
	GError *error = NULL;

	setup(&s, FALSE);
	/* A channel whose sender went to b: its failure reaches our receiver. */
	mesh_channel_new(NULL, &back_send, &back_recv);
	MeshMessage *m = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(m, mesh_sender_into_port(back_send));
	mesh_sender_send_message(s.send, m);
	ck_assert(!mesh_receiver_recv_message(back_recv, 30 * G_USEC_PER_SEC, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	ck_assert_msg(strstr(error->message, "NtAlpcConnectPortEx"), "%s", error->message);
	g_clear_error(&error);
	mesh_receiver_free(back_recv);
	teardown(&s);
}
END_TEST

/* A cancelled invitation fails what waited for the node, with the reason. */
START_TEST(test_cancel_invite)
{
	Setup s = { 0 };
	MeshReceiver *back_recv;
	MeshSender *back_send;
	MeshMessage *msg = NULL;
	GError *error = NULL;

	setup(&s, TRUE);
	mesh_channel_new(NULL, &back_send, &back_recv);
	MeshMessage *m = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(m, mesh_sender_into_port(back_send));
	mesh_sender_send_message(s.send, m);
	ck_assert(!mesh_receiver_recv_message(back_recv, 0, &msg, &error)); /* waiting */
	ck_assert(g_error_matches(error, MESH_ERROR, MESH_ERROR_EMPTY));
	g_clear_error(&error);
	mesh_alpc_node_cancel_invite(s.a, &s.b_id, "the invitee never came");
	ck_assert(!mesh_receiver_recv_message(back_recv, 30 * G_USEC_PER_SEC, &msg, &error));
	ck_assert_msg(g_error_matches(error, MESH_ERROR, MESH_ERROR_NODE_FAILURE), "%s",
		      error->message);
	ck_assert_msg(strstr(error->message, "the invitee never came"), "%s", error->message);
	g_clear_error(&error);
	/* No effect a second time, or for an id never invited. */
	mesh_alpc_node_cancel_invite(s.a, &s.b_id, "again");
	mesh_alpc_node_cancel_invite(s.a, &s.pa, "never invited");
	mesh_receiver_free(back_recv);
	teardown(&s);
}
END_TEST

/* A node shut down while an invitation waits fails what waited. */
START_TEST(test_shutdown_while_invited)
{
	Setup s = { 0 };
	MeshReceiver *back_recv;
	MeshSender *back_send;
	MeshMessage *msg = NULL;
	GError *error = NULL;

	setup(&s, TRUE);
	mesh_channel_new(NULL, &back_send, &back_recv);
	MeshMessage *m = mesh_message_new(NULL, 0);
	mesh_message_add_port_take(m, mesh_sender_into_port(back_send));
	mesh_sender_send_message(s.send, m);
	mesh_sender_free(s.send);
	s.send = NULL;
	mesh_alpc_node_shutdown(s.a, 0);
	ck_assert(!mesh_receiver_recv_message(back_recv, 30 * G_USEC_PER_SEC, &msg, &error));
	ck_assert_msg(error->domain == MESH_ERROR, "%s", error->message);
	g_clear_error(&error);
	mesh_receiver_free(back_recv);
	teardown(&s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("alpc-invite");
	TCase *tc = tcase_create("invite");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_invite_holds_connection);
	tcase_add_test(tc, test_without_invite_fails);
	tcase_add_test(tc, test_cancel_invite);
	tcase_add_test(tc, test_shutdown_while_invited);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
