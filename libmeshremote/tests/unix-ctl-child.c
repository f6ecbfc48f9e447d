/* SPDX-License-Identifier: MIT */
/*
 * A Unix mesh node in a process of its own, driven by the test over a
 * control socket that is no part of the mesh (fd 4, SOCK_SEQPACKET: one
 * command per packet, one reply per packet), so that the test still drives
 * it when the mesh's leader is gone. Usage:
 *   unix-ctl-child lead
 *   unix-ctl-child join NODE PORT LEADER LEADER_PORT   (the invitation's socket is fd 3)
 * A joined node keeps its bootstrap port as the slot "boot". Slots name the
 * node's ports (raw ports, messages of bytes plus ports). Commands:
 *   invite SLOT        invite a new node; SLOT keeps our end. Reply
 *                      "inv NODE PORT LEADER LEADER_PORT" with the socket attached
 *   pair A B           a new local port pair
 *   send SLOT TEXT     send TEXT on SLOT
 *   sendport SLOT P    send a message "port" carrying port P (P leaves the table)
 *   recv SLOT          one message: "msg TEXT", "closed", "failed" or "timeout";
 *                      a port it carries becomes the slot TEXT
 *   recvall SLOT       messages until the end: "all TEXTS closed" or "all TEXTS failed"
 *   bridge A B         bridge two ports (both leave the table)
 *   close SLOT         close a port
 *   offer SLOT         offer our leadership: send the offer's port on SLOT
 *   accept SLOT        receive a message on SLOT and accept the leadership it carries
 *   leader             "yes" or "no"
 *   shutdown           "clean" or "unclean" (mesh_unix_node_shutdown())
 *   drop               exit at once, without any shutdown (no reply)
 * Every other reply is "ok" or "err WHY". The child exits when the control
 * socket closes, after a shutdown if none was asked for.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pal/pal.h>

#include "unix-test.h"

#define CTL_FD 4
#define WAIT_MS 20000

/*
 * A slot's port has no handler: what it receives stays in its queue until
 * "recv" pops it, so a bridge or a move takes the unread messages along (as
 * upstream's receive queue does).
 */
typedef struct {
	MeshPort *port;
} Slot;

static GHashTable *slots; /* name -> Slot * */
static MeshUnixNode *unode;

static void slot_free(gpointer data)
{
	Slot *s = data;
	mesh_port_close(s->port);
	g_free(s);
}

static void slot_put(const char *name, MeshPort *port)
{
	Slot *s = g_new0(Slot, 1);
	s->port = port;
	g_hash_table_replace(slots, g_strdup(name), s);
}

/* Takes the port, with what it holds, out of the table. */
static MeshPort *slot_take(const char *name)
{
	Slot *s = name ? g_hash_table_lookup(slots, name) : NULL;
	if (!s)
		return NULL;
	MeshPort *port = s->port;
	s->port = NULL;
	g_hash_table_remove(slots, name);
	return port;
}

static void reply(const char *text, int fd)
{
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	if (pal_send_with_fds(CTL_FD, &iov, 1, fd >= 0 ? &fd : NULL, fd >= 0, 0) < 0)
		_exit(70);
}

static char *message_text(MeshMessage *msg)
{
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	return g_strndup((const char *)data, size);
}

/* Pops the port's queue, polling (a test child: 1 ms steps, bounded). */
static PortRecv slot_wait(Slot *s, MeshMessage **ret_msg)
{
	gint64 end = g_get_monotonic_time() + WAIT_MS * 1000;
	for (;;) {
		GError *error = NULL;
		PortRecv r = port_try_recv(s->port, ret_msg, &error);
		g_clear_error(&error);
		if (r != PORT_RECV_EMPTY || g_get_monotonic_time() > end)
			return r;
		g_usleep(1000);
	}
}

static char *do_recv(Slot *s, gboolean all)
{
	GString *texts = g_string_new(NULL);
	for (;;) {
		MeshMessage *msg = NULL;
		PortRecv got = slot_wait(s, &msg);
		if (got != PORT_RECV_MESSAGE) {
			const char *end = got == PORT_RECV_EMPTY ? "timeout"
				: got == PORT_RECV_CLOSED ? "closed" : "failed";
			if (!all) {
				g_string_free(texts, TRUE);
				return g_strdup(end);
			}
			char *r = g_strdup_printf("all %s %s", texts->str, end);
			g_string_free(texts, TRUE);
			return r;
		}
		char *text = message_text(msg);
		MeshPort *carried = mesh_message_steal_port(msg, 0);
		mesh_message_free(msg);
		if (carried)
			slot_put(text, carried);
		if (!all) {
			char *r = g_strdup_printf("msg %s", text);
			g_free(text);
			g_string_free(texts, TRUE);
			return r;
		}
		g_string_append(texts, text);
		g_free(text);
	}
}

static void command(char **w, int n)
{
	GError *error = NULL;
	Slot *s = n > 1 ? g_hash_table_lookup(slots, w[1]) : NULL;
	Slot *s2 = n > 2 ? g_hash_table_lookup(slots, w[2]) : NULL;

	if (n == 2 && strcmp(w[0], "invite") == 0) {
		MeshPort *mine, *theirs;
		MeshInvitation *inv = NULL;
		mesh_port_new_pair(&mine, &theirs);
		if (!mesh_unix_node_invite(unode, theirs, WAIT_MS * 1000, &inv, &error)) {
			char *r = g_strdup_printf("err %s", error->message);
			reply(r, -1);
			g_free(r);
			g_error_free(error);
			mesh_port_close(mine);
			return;
		}
		slot_put(w[1], mine);
		MeshNodeId ln, rn;
		MeshPortId lp, rp;
		char ids[4][33];
		mesh_invitation_get_address(inv, &ln, &lp, &rn, &rp);
		uuid_to_hex(&ln, ids[0]);
		uuid_to_hex(&lp, ids[1]);
		uuid_to_hex(&rn, ids[2]);
		uuid_to_hex(&rp, ids[3]);
		char *r = g_strdup_printf("inv %s %s %s %s", ids[0], ids[1], ids[2], ids[3]);
		reply(r, mesh_invitation_get_fd(inv));
		g_free(r);
		mesh_invitation_free(inv);
	} else if (n == 3 && strcmp(w[0], "pair") == 0) {
		MeshPort *a, *b;
		mesh_port_new_pair(&a, &b);
		slot_put(w[1], a);
		slot_put(w[2], b);
		reply("ok", -1);
	} else if (n == 3 && strcmp(w[0], "send") == 0 && s) {
		port_send_bytes(s->port, w[2]);
		reply("ok", -1);
	} else if (n == 3 && strcmp(w[0], "sendport") == 0 && s && s2) {
		MeshMessage *msg = mesh_message_new("port", 4);
		mesh_message_add_port_take(msg, slot_take(w[2]));
		port_send(s->port, msg, FALSE);
		reply("ok", -1);
	} else if (n == 2 && (strcmp(w[0], "recv") == 0 || strcmp(w[0], "recvall") == 0) && s) {
		char *r = do_recv(s, strcmp(w[0], "recvall") == 0);
		reply(r, -1);
		g_free(r);
	} else if (n == 3 && strcmp(w[0], "bridge") == 0 && s && s2 && s != s2) {
		MeshPort *a = slot_take(w[1]);
		mesh_port_bridge(a, slot_take(w[2]));
		reply("ok", -1);
	} else if (n == 2 && strcmp(w[0], "close") == 0 && s) {
		mesh_port_close(slot_take(w[1]));
		reply("ok", -1);
	} else if (n == 2 && strcmp(w[0], "offer") == 0 && s) {
		MeshMessage *msg = mesh_message_new("offer", 5);
		mesh_message_add_port_take(msg, mesh_unix_node_offer_leadership(unode));
		port_send(s->port, msg, FALSE);
		reply("ok", -1);
	} else if (n == 2 && strcmp(w[0], "accept") == 0 && s) {
		MeshMessage *msg = NULL;
		MeshPort *offer = NULL;
		if (slot_wait(s, &msg) == PORT_RECV_MESSAGE) {
			offer = mesh_message_steal_port(msg, 0);
			mesh_message_free(msg);
		}
		if (!offer) {
			reply("err no offer came", -1);
		} else if (!mesh_unix_node_accept_leadership(unode, offer, &error)) {
			char *r = g_strdup_printf("err %s", error->message);
			reply(r, -1);
			g_free(r);
			g_error_free(error);
		} else {
			reply("ok", -1);
		}
	} else if (n == 1 && strcmp(w[0], "leader") == 0) {
		reply(mesh_unix_node_is_leader(unode) ? "yes" : "no", -1);
	} else if (n == 1 && strcmp(w[0], "shutdown") == 0) {
		g_hash_table_remove_all(slots);
		gboolean clean = mesh_unix_node_shutdown(unode, 10 * G_USEC_PER_SEC);
		reply(clean ? "clean" : "unclean", -1);
	} else if (n == 1 && strcmp(w[0], "drop") == 0) {
		_exit(0);
	} else {
		reply("err bad command", -1);
	}
}

int main(int argc, char **argv)
{
	GError *error = NULL;
	MeshNode *node = NULL;

	slots = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, slot_free);
	if (argc == 2 && strcmp(argv[1], "lead") == 0) {
		node = mesh_node_new();
		unode = mesh_unix_node_new(node, NULL);
	} else if (argc == 6 && strcmp(argv[1], "join") == 0) {
		MeshNodeId me, leader;
		MeshPortId my_port, leader_port;
		MeshPort *boot;
		if (!uuid_from_hex(argv[2], &me) || !uuid_from_hex(argv[3], &my_port) ||
		    !uuid_from_hex(argv[4], &leader) || !uuid_from_hex(argv[5], &leader_port))
			return 64;
		MeshInvitation *inv = mesh_invitation_new_take(&me, &my_port, &leader, &leader_port, 3);
		unode = mesh_unix_node_join(inv, NULL, WAIT_MS * 1000, &boot, &error);
		if (!unode) {
			fprintf(stderr, "ctl child: %s\n", error->message);
			return 1;
		}
		node = mesh_node_ref(mesh_unix_node_get_node(unode));
		slot_put("boot", boot);
	} else {
		fprintf(stderr, "usage: unix-ctl-child lead | join NODE PORT LEADER LEADER_PORT\n");
		return 64;
	}

	gboolean shut = FALSE;
	for (;;) {
		char buf[512];
		ssize_t got = recv(CTL_FD, buf, sizeof(buf) - 1, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		buf[got] = 0;
		char **w = g_strsplit(buf, " ", 4);
		command(w, (int)g_strv_length(w));
		shut = shut || strcmp(w[0], "shutdown") == 0;
		g_strfreev(w);
	}
	g_hash_table_destroy(slots);
	if (!shut)
		mesh_unix_node_shutdown(unode, 10 * G_USEC_PER_SEC);
	mesh_unix_node_free(unode);
	mesh_node_unref(node);
	return 0;
}
