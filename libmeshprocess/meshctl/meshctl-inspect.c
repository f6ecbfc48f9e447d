/* SPDX-License-Identifier: MIT */
/*
 * The client side: `meshctl inspect SOCKET` and `meshctl stop SOCKET`.
 *
 * The client joins the mesh serving on SOCKET with mesh_connect() and sends
 * one untyped message: the request's name as bytes ("inspect" or "stop") and,
 * as its only resource, the port of an untyped oneshot sender. The server
 * answers on that oneshot with JSON bytes: mesh_inspect()'s tree, or
 * {"stopping":true}, or {"error":"..."}. Every wait is bounded by --timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshctl.h"

/* Tree printing. */

typedef struct {
	const char *branch; /* "├─ " */
	const char *last;   /* "└─ " */
	const char *pipe;   /* "│  " */
} TreeChars;

static const TreeChars *tree_chars(void)
{
	static const TreeChars utf8 = {"├─ ", "└─ ", "│  "};
	static const TreeChars ascii = {"|- ", "`- ", "|  "};
	return g_get_charset(NULL) ? &utf8 : &ascii;
}

/*
 * "pid 42 (running, node 3f.., rss 5120 KiB, 4 threads)" from an inspect
 * entry (a host's state, when the entry has one).
 */
static char *describe_process(const MeshctlJson *entry, const MeshctlJson *report)
{
	GString *s = g_string_new(NULL);
	const char *pid = meshctl_json_get_text(entry, "pid");
	const char *state = meshctl_json_get_text(entry, "state");
	const char *node = meshctl_json_get_text(entry, "node");
	const char *rss = meshctl_json_get_text(report, "rss_kib");
	const char *threads = meshctl_json_get_text(report, "threads");
	const char *error = meshctl_json_get_text(report, "error");

	g_string_append_printf(s, "pid %s (%s%snode %s", pid ? pid : "?", state ? state : "",
			       state ? ", " : "", node ? node : "?");
	if (rss)
		g_string_append_printf(s, ", rss %s KiB", rss);
	if (threads)
		g_string_append_printf(s, ", %s thread%s", threads,
				       strcmp(threads, "1") == 0 ? "" : "s");
	if (error)
		g_string_append_printf(s, ", no report: %s", error);
	g_string_append_c(s, ')');
	return g_string_free(s, FALSE);
}

/*
 * "sandbox: namespaces mount net pid ipc, private /tmp, no_new_privs,
 * capabilities dropped, Landlock ABI 7, seccomp kill" from a host's report, or NULL when
 * it is not sandboxed (no finalized profile).
 */
static char *describe_sandbox(const MeshctlJson *report)
{
	MeshctlJson *sb = meshctl_json_get(report, "sandbox");
	MeshctlJson *finalized = meshctl_json_get(sb, "finalized");
	if (!finalized || finalized->type != MESHCTL_JSON_BOOL || !finalized->boolean)
		return NULL;
	GString *s = g_string_new("sandbox: namespaces");
	MeshctlJson *ns = meshctl_json_get(sb, "namespaces");
	guint n = 0;
	for (guint i = 0; ns && ns->type == MESHCTL_JSON_ARRAY && i < ns->items->len; i++) {
		MeshctlJson *item = ns->items->pdata[i];
		if (item->type == MESHCTL_JSON_STRING) {
			g_string_append_printf(s, " %s", item->text);
			n++;
		}
	}
	if (!n)
		g_string_append(s, " none");
	MeshctlJson *tmp = meshctl_json_get(sb, "private_tmp");
	if (tmp && tmp->type == MESHCTL_JSON_BOOL && tmp->boolean)
		g_string_append(s, ", private /tmp");
	MeshctlJson *nnp = meshctl_json_get(sb, "no_new_privs");
	if (nnp && nnp->type == MESHCTL_JSON_BOOL && nnp->boolean)
		g_string_append(s, ", no_new_privs");
	MeshctlJson *caps = meshctl_json_get(sb, "capabilities_dropped");
	if (caps && caps->type == MESHCTL_JSON_BOOL && caps->boolean)
		g_string_append(s, ", capabilities dropped");
	const char *abi = meshctl_json_get_text(sb, "landlock_abi");
	if (abi && strcmp(abi, "0") != 0)
		g_string_append_printf(s, ", Landlock ABI %s", abi);
	else
		g_string_append(s, ", no Landlock");
	const char *seccomp = meshctl_json_get_text(sb, "seccomp");
	g_string_append_printf(s, ", seccomp %s", seccomp ? seccomp : "?");
	return g_string_free(s, FALSE);
}

static int compare_hosts(gconstpointer a, gconstpointer b)
{
	const char *na = meshctl_json_get_text(*(MeshctlJson *const *)a, "name");
	const char *nb = meshctl_json_get_text(*(MeshctlJson *const *)b, "name");
	return strverscmp(na ? na : "", nb ? nb : "");
}

gboolean meshctl_print_tree(FILE *out, const char *json, const char *indent, GError **error)
{
	MeshctlJson *tree = meshctl_json_parse(json, error);
	if (!tree)
		return FALSE;
	const char *name = meshctl_json_get_text(tree, "mesh");
	MeshctlJson *parent = meshctl_json_get(tree, "parent");
	MeshctlJson *hosts = meshctl_json_get(tree, "hosts");
	if (!name || !parent || !hosts || hosts->type != MESHCTL_JSON_ARRAY) {
		g_set_error(error, MESHCTL_ERROR, 0, "not an inspect tree (no mesh, parent or hosts)");
		meshctl_json_free(tree);
		return FALSE;
	}
	const TreeChars *tc = tree_chars();
	GPtrArray *sorted = g_ptr_array_new();
	for (guint i = 0; i < hosts->items->len; i++)
		g_ptr_array_add(sorted, hosts->items->pdata[i]);
	g_ptr_array_sort(sorted, compare_hosts);

	fprintf(out, "%smesh %s: a parent and %u host%s\n", indent, name, sorted->len,
		sorted->len == 1 ? "" : "s");
	char *p = describe_process(parent, parent);
	fprintf(out, "%s%sparent %s\n", indent, tc->last, p);
	g_free(p);
	for (guint i = 0; i < sorted->len; i++) {
		MeshctlJson *h = sorted->pdata[i];
		const char *hname = meshctl_json_get_text(h, "name");
		MeshctlJson *report = meshctl_json_get(h, "report");
		char *d = describe_process(h, report);
		gboolean last = i + 1 == sorted->len;
		fprintf(out, "%s   %s%s %s\n", indent, last ? tc->last : tc->branch,
			hname ? hname : "?", d);
		g_free(d);
		char *sb = describe_sandbox(report);
		if (sb)
			fprintf(out, "%s   %s%s%s\n", indent, last ? "   " : tc->pipe, tc->last, sb);
		g_free(sb);
	}
	g_ptr_array_free(sorted, TRUE);
	meshctl_json_free(tree);
	return TRUE;
}

/* The request. */

static char *request(const char *path, const char *what, gint64 timeout_us, GError **error)
{
	gint64 deadline = g_get_monotonic_time() + timeout_us;
	MeshSender *sender = NULL;
	MeshConnection *conn = mesh_connect(path, timeout_us, &sender, error);
	if (!conn) {
		if (g_get_monotonic_time() >= deadline)
			g_prefix_error(error, "no answer within %.3g s: ",
				       (double)timeout_us / G_USEC_PER_SEC);
		if (error && *error && !strstr((*error)->message, path))
			g_prefix_error(error, "cannot connect to %s: ", path);
		return NULL;
	}

	MeshOneshotSender *os;
	MeshOneshotReceiver *answer;
	mesh_oneshot_new(NULL, &os, &answer);
	MeshMessage *msg = mesh_message_new(what, strlen(what));
	mesh_message_add_port_take(msg, mesh_oneshot_sender_into_port(os));
	mesh_sender_send_message(sender, msg);
	mesh_sender_free(sender);

	MeshMessage *reply = NULL;
	char *text = NULL;
	gint64 left = MAX(deadline - g_get_monotonic_time(), 0);
	if (mesh_oneshot_recv_message(answer, left, &reply, error)) {
		size_t size = 0;
		const uint8_t *data = mesh_message_get_data(reply, &size);
		text = g_strndup((const char *)data, size);
		mesh_message_free(reply);
	} else {
		if (g_error_matches(*error, MESH_ERROR, MESH_ERROR_TIMED_OUT)) {
			g_prefix_error(error, "no answer from %s within %.3g s: ", path,
				       (double)timeout_us / G_USEC_PER_SEC);
			mesh_oneshot_receiver_free(answer); /* consumed on a final error only */
		} else {
			g_prefix_error(error, "no answer from %s: ", path);
		}
	}
	mesh_connection_shutdown(conn, G_USEC_PER_SEC);
	return text;
}

/* A reply {"error": "..."} is the server refusing. */
static gboolean check_reply(const char *text, MeshctlJson **ret, GError **error)
{
	MeshctlJson *v = meshctl_json_parse(text, error);
	if (!v) {
		g_prefix_error(error, "unreadable answer: ");
		return FALSE;
	}
	const char *e = meshctl_json_get_text(v, "error");
	if (e) {
		g_set_error(error, MESHCTL_ERROR, 0, "the server answered: %s", e);
		meshctl_json_free(v);
		return FALSE;
	}
	*ret = v;
	return TRUE;
}

typedef struct {
	gboolean json;
	double timeout;
	char **rest;
} ClientOptions;

static gboolean parse_client(int argc, char **argv, const char *summary, gboolean json_option,
			     ClientOptions *o, const char **ret_path)
{
	GOptionEntry entries[] = {
		{"json", 0, 0, G_OPTION_ARG_NONE, &o->json, "Print the server's JSON as it is", NULL},
		{"timeout", 't', 0, G_OPTION_ARG_DOUBLE, &o->timeout,
		 "Give up after this many seconds (default 5)", "SECONDS"},
		{"verbose", 'v', 0, G_OPTION_ARG_NONE, &meshctl_verbose, "Show library messages", NULL},
		{G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &o->rest, NULL, NULL},
		{NULL},
	};
	if (!json_option)
		memmove(&entries[0], &entries[1], sizeof(entries) - sizeof(entries[0]));
	char *prgname = g_strdup_printf("meshctl %s", argv[0]);
	g_set_prgname(prgname);
	g_free(prgname);
	GOptionContext *ctx = g_option_context_new("SOCKET");
	g_option_context_set_summary(ctx, summary);
	g_option_context_add_main_entries(ctx, entries, NULL);
	o->timeout = 5;
	GError *error = NULL;
	gboolean ok = g_option_context_parse(ctx, &argc, &argv, &error);
	g_option_context_free(ctx);
	if (!ok) {
		fprintf(stderr, "meshctl: %s\n", error->message);
		g_error_free(error);
		return FALSE;
	}
	if (!o->rest || !o->rest[0] || o->rest[1]) {
		fprintf(stderr, "meshctl: %s takes one SOCKET (see meshctl help %s)\n", argv[0],
			argv[0]);
		return FALSE;
	}
	if (!(o->timeout > 0 && o->timeout <= 3600)) {
		fprintf(stderr, "meshctl: --timeout must be between 0 and 3600 seconds\n");
		return FALSE;
	}
	*ret_path = o->rest[0];
	return TRUE;
}

int meshctl_inspect(int argc, char **argv)
{
	ClientOptions o = {0};
	const char *path;
	GError *error = NULL;

	if (!parse_client(argc, argv,
			  "Connects to the mesh that \"meshctl serve SOCKET\" (or \"meshctl demo "
			  "--serve SOCKET\")\nruns, asks it for mesh_inspect()'s tree and prints "
			  "it: the mesh, the parent\nprocess and each host, with pid, node id, "
			  "resident memory and threads.",
			  TRUE, &o, &path)) {
		g_strfreev(o.rest);
		return 2;
	}
	char *text = request(path, "inspect", (gint64)(o.timeout * G_USEC_PER_SEC), &error);
	MeshctlJson *v = NULL;
	int status = 1;
	if (!text || !check_reply(text, &v, &error)) {
		meshctl_print_error("inspect", error);
		g_clear_error(&error);
	} else if (o.json) {
		printf("%s\n", text);
		status = 0;
	} else if (!meshctl_print_tree(stdout, text, "", &error)) {
		meshctl_print_error("inspect", error);
		g_clear_error(&error);
	} else {
		status = 0;
	}
	meshctl_json_free(v);
	g_free(text);
	g_strfreev(o.rest);
	return status;
}

int meshctl_stop(int argc, char **argv)
{
	ClientOptions o = {0};
	const char *path;
	GError *error = NULL;

	if (!parse_client(argc, argv,
			  "Asks the mesh serving on SOCKET to shut down: it stops listening, "
			  "shuts its hosts\ndown and exits. Returns once the server has "
			  "acknowledged.",
			  FALSE, &o, &path)) {
		g_strfreev(o.rest);
		return 2;
	}
	char *text = request(path, "stop", (gint64)(o.timeout * G_USEC_PER_SEC), &error);
	MeshctlJson *v = NULL;
	int status = 1;
	if (!text || !check_reply(text, &v, &error)) {
		meshctl_print_error("stop", error);
		g_clear_error(&error);
	} else {
		printf("stop: the server on %s is shutting down\n", path);
		status = 0;
	}
	meshctl_json_free(v);
	g_free(text);
	g_strfreev(o.rest);
	return status;
}
