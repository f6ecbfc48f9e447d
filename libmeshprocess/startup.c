/* SPDX-License-Identifier: MIT */
/*
 * The host startup and the parent's requests on upstream's wire (reference
 * 5.2 to 5.4; mesh_process's InitialMessage and HostRequest, the inspect
 * crate's Deferred and InternalNode). Shared by the parent (mesh.c) and the
 * host (host.c); startup-private.h says what each function does.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "startup-private.h"
#include "wire-private.h" /* libmeshpayload's: the suite's one wire format */

/* Upstream's InitialMessage<T>: {1 requests, 2 init_message, 3 events (ours)}. */
enum {
	INIT_REQUESTS = 1,
	INIT_MESSAGE = 2,
	INIT_EVENTS = 3,
	INIT_PID = 4,
};

/* Moves every resource of @from, in order, to the end of @to. */
static void move_resources(MeshMessage *to, MeshMessage *from)
{
	guint n = mesh_message_get_n_resources(from);
	for (guint i = 0; i < n; i++) {
		MeshPort *p = mesh_message_steal_port(from, i);
		if (p) {
			mesh_message_add_port_take(to, p);
			continue;
		}
		int fd = mesh_message_steal_fd(from, i);
		if (fd >= 0)
			mesh_message_add_fd_take(to, fd);
	}
}

MeshMessage *process_initial_message_new(MeshPort *requests, MeshMessage *init, MeshPort *events,
					 guint32 pid)
{
	size_t size;
	const uint8_t *data = mesh_message_get_data(init, &size);
	guint n_res = mesh_message_get_n_resources(init);
	GByteArray *bytes = g_byte_array_sized_new((guint)size + 24);
	uint8_t head[24];
	size_t k = 0;

	/*
	 * Field order is declaration order, as upstream writes it: the
	 * requests port, then T as a nested message (wire type 2, or 6 with its
	 * resource count when it holds resources; left out when empty, as
	 * upstream leaves out an empty nested message), then our events port.
	 */
	if (requests)
		head[k++] = WIRE_KEY1(INIT_REQUESTS, WIRE_RESOURCE);
	if (size || n_res) {
		if (n_res) {
			head[k++] = WIRE_KEY1(INIT_MESSAGE, WIRE_MESH_MESSAGE);
			k += wire_put_varint(head + k, n_res);
		} else {
			head[k++] = WIRE_KEY1(INIT_MESSAGE, WIRE_LEN);
		}
		k += wire_put_varint(head + k, size);
	}
	g_byte_array_append(bytes, head, (guint)k);
	g_byte_array_append(bytes, data, (guint)size);
	if (events) {
		uint8_t key = WIRE_KEY1(INIT_EVENTS, WIRE_RESOURCE);
		g_byte_array_append(bytes, &key, 1);
	}
	if (pid && (events || !requests)) {
		uint8_t tail[12];
		size_t n = 0;
		tail[n++] = WIRE_KEY1(INIT_PID, WIRE_VARINT);
		n += wire_put_varint(tail + n, pid);
		g_byte_array_append(bytes, tail, (guint)n);
	}
	MeshMessage *msg = mesh_message_new(bytes->data, bytes->len);
	g_byte_array_free(bytes, TRUE);
	if (requests)
		mesh_message_add_port_take(msg, requests);
	move_resources(msg, init);
	mesh_message_free(init);
	if (events)
		mesh_message_add_port_take(msg, events);
	return msg;
}

gboolean process_initial_message_parse(MeshMessage *msg, gboolean requests_optional,
				       MeshPort **ret_requests,
				       MeshMessage **ret_init, MeshPort **ret_events,
				       guint32 *ret_pid, GError **error)
{
	size_t size;
	const uint8_t *data = mesh_message_get_data(msg, &size);
	guint n_res = mesh_message_get_n_resources(msg);
	WireReader r = {data, data + size};
	GByteArray *init_bytes = g_byte_array_new();
	MeshMessage *init = mesh_message_new(NULL, 0);
	MeshPort *requests = NULL, *events = NULL;
	guint next = 0; /* the next resource in field order */
	guint64 pid = 0;
	const char *bad = NULL;

	while (!bad && wire_remaining(&r)) {
		uint64_t number;
		unsigned wt;
		WireField f = {0};
		if (wire_read_key(&r, &number, &wt) != WIRE_OK ||
		    wire_read_payload(&r, wt, &f) != WIRE_OK) {
			bad = "a malformed field";
			break;
		}
		if (f.n_res > n_res - next) {
			bad = "a field claims more resources than the message has";
			break;
		}
		guint first = next;
		next += (guint)f.n_res;
		if (number == INIT_REQUESTS && wt == WIRE_RESOURCE) {
			mesh_port_close(requests); /* a repeated field: the last wins */
			requests = mesh_message_steal_port(msg, first);
			if (!requests)
				bad = "requests is not a port";
		} else if (number == INIT_EVENTS && wt == WIRE_RESOURCE) {
			mesh_port_close(events);
			events = mesh_message_steal_port(msg, first);
			if (!events)
				bad = "events is not a port";
		} else if (number == INIT_MESSAGE && (wt == WIRE_LEN || wt == WIRE_MESH_MESSAGE)) {
			/* A repeated nested message merges: its encodings concatenate. */
			g_byte_array_append(init_bytes, f.data, (guint)f.size);
			for (guint i = first; i < next; i++) {
				MeshPort *p = mesh_message_steal_port(msg, i);
				if (p) {
					mesh_message_add_port_take(init, p);
					continue;
				}
				int fd = mesh_message_steal_fd(msg, i);
				if (fd < 0) {
					bad = "a resource of the initial message is missing";
					break;
				}
				mesh_message_add_fd_take(init, fd);
			}
		} else if (number == INIT_PID && wt == WIRE_VARINT) {
			pid = f.value <= G_MAXINT ? f.value : 0; /* not a pid: ignored */
			/* field 4 of another wire type: unknown, skipped below */
		} else if (number == INIT_REQUESTS || number == INIT_MESSAGE ||
			   number == INIT_EVENTS) {
			bad = "a field of the wrong wire type";
		}
		/* Other fields are skipped; their resources are released with @msg. */
	}
	if (!bad && !requests && !requests_optional)
		bad = "no request channel";
	if (bad) {
		g_set_error(error, MESH_PROCESS_ERROR, MESH_PROCESS_ERROR_INVITATION,
			    "malformed initial message: %s", bad);
		mesh_port_close(requests);
		mesh_port_close(events);
		mesh_message_free(init);
		g_byte_array_free(init_bytes, TRUE);
		mesh_message_free(msg);
		return FALSE;
	}
	/* The user's message: its bytes, then the resources moved above. */
	MeshMessage *user = mesh_message_new(init_bytes->data, init_bytes->len);
	g_byte_array_free(init_bytes, TRUE);
	move_resources(user, init);
	mesh_message_free(init);
	mesh_message_free(msg);
	*ret_requests = requests;
	*ret_init = user;
	if (ret_events)
		*ret_events = events;
	else
		mesh_port_close(events);
	if (ret_pid)
		*ret_pid = (guint32)pid;
	return TRUE;
}

/* Requests. */

static MeshProcess__InspectSensitivity *sensitivity_new(int level)
{
	MeshProcess__InspectSensitivity *s = g_malloc(sizeof(*s));
	mesh_process__inspect_sensitivity__init(s);
	MeshProcess__InspectUnit *u = g_malloc(sizeof(*u));
	mesh_process__inspect_unit__init(u);
	s->level_case = (MeshProcess__InspectSensitivity__LevelCase)level;
	switch (level) {
	case PROCESS_SENSITIVITY_SAFE:
		s->safe = u;
		break;
	case PROCESS_SENSITIVITY_UNSPECIFIED:
		s->unspecified = u;
		break;
	default:
		s->level_case = MESH_PROCESS__INSPECT_SENSITIVITY__LEVEL_SENSITIVE;
		s->sensitive = u;
	}
	return s;
}

MeshProcess__HostRequest *process_inspect_request_new(MeshPort *node, guint64 depth)
{
	MeshProcess__InspectDeferredInner *in = g_malloc(sizeof(*in));
	mesh_process__inspect_deferred_inner__init(in);
	in->depth = depth;
	in->has_depth = depth != 0; /* 0 is left out, as upstream does */
	in->node = mesh_port_into_field(node);
	/* The parent may see everything of its own hosts. */
	in->sensitivity = sensitivity_new(PROCESS_SENSITIVITY_SENSITIVE);
	in->parent_sensitivity = sensitivity_new(PROCESS_SENSITIVITY_UNSPECIFIED);
	in->number_format = g_malloc(sizeof(*in->number_format));
	mesh_process__inspect_number_format__init(in->number_format);
	in->number_format->format_case = MESH_PROCESS__INSPECT_NUMBER_FORMAT__FORMAT_DECIMAL;
	in->number_format->decimal = g_malloc(sizeof(MeshProcess__InspectUnit));
	mesh_process__inspect_unit__init(in->number_format->decimal);

	MeshProcess__HostRequest *req = g_malloc(sizeof(*req));
	mesh_process__host_request__init(req);
	req->request_case = MESH_PROCESS__HOST_REQUEST__REQUEST_INSPECT;
	req->inspect = g_malloc(sizeof(*req->inspect));
	mesh_process__inspect_deferred__init(req->inspect);
	req->inspect->inner = in;
	return req;
}

MeshOneshotReceiver *process_inspect_ask(MeshSender *requests, gboolean deferred)
{
	MeshOneshotSender *os;
	MeshOneshotReceiver *reply;
	MeshProcess__HostRequest *req;

	if (deferred) {
		mesh_oneshot_new(&mesh_process__inspect_node__descriptor, &os, &reply);
		req = process_inspect_request_new(mesh_oneshot_sender_into_port(os),
						  PROCESS_INSPECT_DEPTH);
	} else {
		mesh_oneshot_new(&mesh_process__inspect_reply__descriptor, &os, &reply);
		req = g_malloc(sizeof(*req));
		mesh_process__host_request__init(req);
		req->request_case = MESH_PROCESS__HOST_REQUEST__REQUEST_INSPECT_JSON;
		req->inspect_json = g_malloc(sizeof(*req->inspect_json));
		mesh_process__host_inspect_json__init(req->inspect_json);
		req->inspect_json->reply = mesh_port_into_field(mesh_oneshot_sender_into_port(os));
	}
	mesh_sender_send(requests, &req->base);
	return reply;
}

char *process_inspect_error_json(const char *message)
{
	GString *e = g_string_new("{\"error\":");
	process_json_string(e, message);
	g_string_append_c(e, '}');
	return g_string_free(e, FALSE);
}

/* A tree parsed from the host's own JSON report (inspect_self() in host.c). */
typedef enum {
	JNULL,
	JBOOL,
	JUNSIGNED,
	JSIGNED,
	JDOUBLE,
	JSTRING,
	JDIR, /* an object, or an array with names "0", "1", ... */
} JKind;

typedef struct JNode JNode;
struct JNode {
	JKind kind;
	char *name; /* within its parent */
	gboolean b;
	guint64 u;
	gint64 s;
	double d;
	char *str;
	GPtrArray *children; /* JNode * */
};

static void jnode_free(gpointer data)
{
	JNode *n = data;
	if (!n)
		return;
	g_free(n->name);
	g_free(n->str);
	if (n->children)
		g_ptr_array_unref(n->children);
	g_free(n);
}

typedef struct {
	const char *p;
	int depth;
} JParser;

static void skip_space(JParser *j)
{
	while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r')
		j->p++;
}

static char *parse_string(JParser *j)
{
	if (*j->p != '"')
		return NULL;
	j->p++;
	GString *s = g_string_new(NULL);
	while (*j->p && *j->p != '"') {
		if (*j->p != '\\') {
			g_string_append_c(s, *j->p++);
			continue;
		}
		j->p++;
		switch (*j->p) {
		case 'n':
			g_string_append_c(s, '\n');
			break;
		case 't':
			g_string_append_c(s, '\t');
			break;
		case 'u': {
			char hex[5] = {0};
			for (int i = 0; i < 4 && j->p[1 + i]; i++)
				hex[i] = j->p[1 + i];
			if (strlen(hex) != 4) {
				g_string_free(s, TRUE);
				return NULL;
			}
			g_string_append_unichar(s, (gunichar)strtoul(hex, NULL, 16));
			j->p += 4;
			break;
		}
		case '\0':
			g_string_free(s, TRUE);
			return NULL;
		default: /* \" \\ \/ */
			g_string_append_c(s, *j->p);
		}
		j->p++;
	}
	if (*j->p != '"') {
		g_string_free(s, TRUE);
		return NULL;
	}
	j->p++;
	return g_string_free(s, FALSE);
}

static JNode *parse_value(JParser *j);

static JNode *parse_dir(JParser *j, gboolean array)
{
	JNode *n = g_new0(JNode, 1);
	n->kind = JDIR;
	n->children = g_ptr_array_new_with_free_func(jnode_free);
	j->p++;
	skip_space(j);
	if (*j->p == (array ? ']' : '}')) {
		j->p++;
		return n;
	}
	for (;;) {
		char *name;
		skip_space(j);
		if (array) {
			name = g_strdup_printf("%u", n->children->len);
		} else {
			name = parse_string(j);
			skip_space(j);
			if (!name || *j->p != ':') {
				g_free(name);
				goto fail;
			}
			j->p++;
		}
		JNode *child = parse_value(j);
		if (!child) {
			g_free(name);
			goto fail;
		}
		child->name = name;
		g_ptr_array_add(n->children, child);
		skip_space(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p == (array ? ']' : '}')) {
			j->p++;
			return n;
		}
		goto fail;
	}
fail:
	jnode_free(n);
	return NULL;
}

static JNode *parse_value(JParser *j)
{
	skip_space(j);
	if (++j->depth > 32)
		return NULL;
	JNode *n = NULL;
	if (*j->p == '{' || *j->p == '[') {
		n = parse_dir(j, *j->p == '[');
	} else if (*j->p == '"') {
		char *s = parse_string(j);
		if (s) {
			n = g_new0(JNode, 1);
			n->kind = JSTRING;
			n->str = s;
		}
	} else if (g_str_has_prefix(j->p, "null") || g_str_has_prefix(j->p, "true") ||
		   g_str_has_prefix(j->p, "false")) {
		n = g_new0(JNode, 1);
		n->kind = *j->p == 'n' ? JNULL : JBOOL;
		n->b = *j->p == 't';
		j->p += *j->p == 'f' ? 5 : 4;
	} else if (*j->p == '-' || g_ascii_isdigit(*j->p)) {
		const char *start = j->p;
		while (*j->p == '-' || *j->p == '+' || *j->p == '.' || *j->p == 'e' ||
		       *j->p == 'E' || g_ascii_isdigit(*j->p))
			j->p++;
		char *text = g_strndup(start, (gsize)(j->p - start));
		n = g_new0(JNode, 1);
		if (strpbrk(text, ".eE")) {
			n->kind = JDOUBLE;
			n->d = g_ascii_strtod(text, NULL);
		} else if (*text == '-') {
			n->kind = JSIGNED;
			n->s = g_ascii_strtoll(text, NULL, 10);
		} else {
			n->kind = JUNSIGNED;
			n->u = g_ascii_strtoull(text, NULL, 10);
		}
		g_free(text);
	}
	j->depth--;
	return n;
}

static MeshProcess__InspectUnit *unit_new(void)
{
	MeshProcess__InspectUnit *u = g_malloc(sizeof(*u));
	mesh_process__inspect_unit__init(u);
	return u;
}

static MeshProcess__InspectNode *node_new(void)
{
	MeshProcess__InspectNode *n = g_malloc(sizeof(*n));
	mesh_process__inspect_node__init(n);
	return n;
}

static MeshProcess__InspectNode *node_failed(MeshProcess__InspectError__ErrorCase which)
{
	MeshProcess__InspectNode *n = node_new();
	n->node_case = MESH_PROCESS__INSPECT_NODE__NODE_FAILED;
	n->failed = g_malloc(sizeof(*n->failed));
	mesh_process__inspect_failed__init(n->failed);
	MeshProcess__InspectError *e = g_malloc(sizeof(*e));
	mesh_process__inspect_error__init(e);
	e->error_case = which;
	if (which == MESH_PROCESS__INSPECT_ERROR__ERROR_IMMUTABLE)
		e->immutable = unit_new();
	else
		e->not_a_directory = unit_new();
	n->failed->error = e;
	return n;
}

/* Upstream's ValueKind::with_format(): numbers carry the request's format. */
static MeshProcess__InspectNode *node_value(const JNode *j, int number_format)
{
	MeshProcess__InspectNode *n = node_new();
	MeshProcess__InspectValueKind *k = g_malloc(sizeof(*k));
	mesh_process__inspect_value_kind__init(k);
	gboolean number = FALSE;
	switch (j->kind) {
	case JBOOL:
		k->kind_case = MESH_PROCESS__INSPECT_VALUE_KIND__KIND_BOOL;
		k->bool_ = g_malloc(sizeof(*k->bool_));
		mesh_process__inspect_bool__init(k->bool_);
		k->bool_->value = j->b;
		break;
	case JUNSIGNED:
		k->kind_case = MESH_PROCESS__INSPECT_VALUE_KIND__KIND_UNSIGNED;
		k->unsigned_ = g_malloc(sizeof(*k->unsigned_));
		mesh_process__inspect_unsigned__init(k->unsigned_);
		k->unsigned_->value = j->u;
		number = TRUE;
		break;
	case JSIGNED:
		k->kind_case = MESH_PROCESS__INSPECT_VALUE_KIND__KIND_SIGNED;
		k->signed_ = g_malloc(sizeof(*k->signed_));
		mesh_process__inspect_signed__init(k->signed_);
		k->signed_->value = j->s;
		number = TRUE;
		break;
	case JDOUBLE:
		k->kind_case = MESH_PROCESS__INSPECT_VALUE_KIND__KIND_DOUBLE;
		k->double_ = g_malloc(sizeof(*k->double_));
		mesh_process__inspect_double__init(k->double_);
		k->double_->value = j->d;
		break;
	default:
		k->kind_case = MESH_PROCESS__INSPECT_VALUE_KIND__KIND_STRING;
		k->string = g_malloc(sizeof(*k->string));
		mesh_process__inspect_string__init(k->string);
		k->string->value = g_strdup(j->str ? j->str : "");
	}
	MeshProcess__InspectValue *v = g_malloc(sizeof(*v));
	mesh_process__inspect_value__init(v);
	v->kind = k;
	static const guint64 format_bits[] = {0, 0, 1, 4, 2}; /* by NumberFormat variant */
	if (number && number_format > 0 && number_format < (int)G_N_ELEMENTS(format_bits) &&
	    format_bits[number_format]) {
		v->flags = g_malloc(sizeof(*v->flags));
		mesh_process__inspect_value_flags__init(v->flags);
		v->flags->bits = format_bits[number_format];
	}
	n->node_case = MESH_PROCESS__INSPECT_NODE__NODE_VALUE;
	n->value = g_malloc(sizeof(*n->value));
	mesh_process__inspect_node_value__init(n->value);
	n->value->value = v;
	return n;
}

typedef struct {
	const char *path; /* what is left of it, without leading '/'s */
	guint64 depth;
	gboolean update;
	int number_format;
} Walk;

/*
 * Upstream's Request/Response for one node (inspect lib.rs, Action::eval):
 * a value at the end of the path (an update of it is refused: our values
 * are read-only), a value with path left is "not a directory"; a directory
 * with no depth left is "depth exhausted", else its children on the path
 * (same depth), or all of them one level deeper. Our fields are all "safe",
 * the lowest level, so no request's sensitivity hides them.
 */
static MeshProcess__InspectNode *respond_node(const JNode *j, Walk w)
{
	while (*w.path == '/')
		w.path++;
	if (j->kind == JNULL && !*w.path) {
		MeshProcess__InspectNode *n = node_new();
		n->node_case = MESH_PROCESS__INSPECT_NODE__NODE_UNEVALUATED;
		n->unevaluated = unit_new();
		return n;
	}
	if (j->kind != JDIR) {
		if (*w.path)
			return node_failed(MESH_PROCESS__INSPECT_ERROR__ERROR_NOT_A_DIRECTORY);
		if (w.update)
			return node_failed(MESH_PROCESS__INSPECT_ERROR__ERROR_IMMUTABLE);
		return node_value(j, w.number_format);
	}
	MeshProcess__InspectNode *n = node_new();
	if (w.depth == 0) {
		n->node_case = MESH_PROCESS__INSPECT_NODE__NODE_DEPTH_EXHAUSTED;
		n->depth_exhausted = unit_new();
		return n;
	}
	n->node_case = MESH_PROCESS__INSPECT_NODE__NODE_DIR;
	n->dir = g_malloc(sizeof(*n->dir));
	mesh_process__inspect_dir__init(n->dir);
	GPtrArray *entries = g_ptr_array_new();
	for (guint i = 0; i < j->children->len; i++) {
		const JNode *c = j->children->pdata[i];
		Walk cw = w;
		if (*w.path) {
			size_t len = strlen(c->name);
			if (strncmp(w.path, c->name, len) != 0 ||
			    (w.path[len] != '\0' && w.path[len] != '/'))
				continue;
			cw.path = w.path + len;
		} else {
			cw.depth = w.depth - 1;
		}
		MeshProcess__InspectEntry *e = g_malloc(sizeof(*e));
		mesh_process__inspect_entry__init(e);
		e->name = g_strdup(c->name);
		e->node = respond_node(c, cw);
		e->sensitivity = sensitivity_new(PROCESS_SENSITIVITY_SAFE);
		g_ptr_array_add(entries, e);
	}
	n->dir->n_entries = entries->len;
	n->dir->entries = (MeshProcess__InspectEntry **)g_ptr_array_free(entries, FALSE);
	return n;
}

MeshProcess__InspectNode *process_inspect_respond(const char *json,
						  const MeshProcess__InspectDeferredInner *req)
{
	JParser j = {json, 0};
	JNode *root = parse_value(&j);
	if (!root) {
		MeshProcess__InspectNode *n = node_new();
		n->node_case = MESH_PROCESS__INSPECT_NODE__NODE_UNEVALUATED;
		n->unevaluated = unit_new();
		return n;
	}
	Walk w = {.path = req->path ? req->path : "",
		  .depth = req->has_depth ? req->depth : 0,
		  .update = req->value != NULL,
		  .number_format = req->number_format ? (int)req->number_format->format_case : 0};
	MeshProcess__InspectNode *n = respond_node(root, w);
	jnode_free(root);
	return n;
}

/* The reply as JSON, for the parent's report. */

static void value_to_json(GString *out, const MeshProcess__InspectValue *v)
{
	const MeshProcess__InspectValueKind *k = v ? v->kind : NULL;
	if (!k) {
		g_string_append(out, "null");
		return;
	}
	switch (k->kind_case) {
	case MESH_PROCESS__INSPECT_VALUE_KIND__KIND_SIGNED:
		g_string_append_printf(out, "%" G_GINT64_FORMAT, (gint64)k->signed_->value);
		break;
	case MESH_PROCESS__INSPECT_VALUE_KIND__KIND_UNSIGNED:
		g_string_append_printf(out, "%" G_GUINT64_FORMAT, (guint64)k->unsigned_->value);
		break;
	case MESH_PROCESS__INSPECT_VALUE_KIND__KIND_FLOAT:
	case MESH_PROCESS__INSPECT_VALUE_KIND__KIND_DOUBLE: {
		double d = k->kind_case == MESH_PROCESS__INSPECT_VALUE_KIND__KIND_FLOAT
				   ? (double)k->float_->value
				   : k->double_->value;
		char buf[G_ASCII_DTOSTR_BUF_SIZE];
		if (isfinite(d))
			g_string_append(out, g_ascii_dtostr(buf, sizeof(buf), d));
		else
			g_string_append(out, "null");
		break;
	}
	case MESH_PROCESS__INSPECT_VALUE_KIND__KIND_BOOL:
		g_string_append(out, k->bool_->value ? "true" : "false");
		break;
	case MESH_PROCESS__INSPECT_VALUE_KIND__KIND_STRING:
		process_json_string(out, k->string->value);
		break;
	case MESH_PROCESS__INSPECT_VALUE_KIND__KIND_BYTES: {
		/* Bytes as hex text: JSON has no bytes. */
		char *hex = g_malloc(k->bytes->value.len * 2 + 1);
		for (size_t i = 0; i < k->bytes->value.len; i++)
			g_snprintf(hex + 2 * i, 3, "%02x", k->bytes->value.data[i]);
		hex[k->bytes->value.len * 2] = '\0';
		process_json_string(out, hex);
		g_free(hex);
		break;
	}
	default:
		g_string_append(out, "null");
	}
}

static void error_to_json(GString *out, const MeshProcess__InspectError *e)
{
	const char *text = "error";
	if (e) {
		switch (e->error_case) {
		case MESH_PROCESS__INSPECT_ERROR__ERROR_IMMUTABLE:
			text = "immutable";
			break;
		case MESH_PROCESS__INSPECT_ERROR__ERROR_UPDATE:
			text = e->update && e->update->value ? e->update->value : "update failed";
			break;
		case MESH_PROCESS__INSPECT_ERROR__ERROR_NOT_A_DIRECTORY:
			text = "not a directory";
			break;
		case MESH_PROCESS__INSPECT_ERROR__ERROR_UNRESOLVED:
			text = "unresolved";
			break;
		case MESH_PROCESS__INSPECT_ERROR__ERROR_MESH:
			text = e->mesh && e->mesh->value ? e->mesh->value : "mesh error";
			break;
		default:
			break;
		}
	}
	g_string_append(out, "{\"error\":");
	process_json_string(out, text);
	g_string_append_c(out, '}');
}

/* Whether @e is left out of the report (an ignored node). */
static gboolean entry_ignored(const MeshProcess__InspectEntry *e)
{
	return e->node && e->node->node_case == MESH_PROCESS__INSPECT_NODE__NODE_IGNORED;
}

/*
 * Whether @d is an array in disguise: its entries are named 0, 1, ... in
 * order, as process_inspect_respond() names an array's (and upstream's
 * inspect names a sequence's). An empty directory stays an object.
 */
static gboolean dir_is_array(const MeshProcess__InspectDir *d)
{
	guint n = 0;
	for (size_t i = 0; d && i < d->n_entries; i++) {
		if (entry_ignored(d->entries[i]))
			continue;
		char want[16];
		g_snprintf(want, sizeof(want), "%u", n++);
		if (!d->entries[i]->name || strcmp(d->entries[i]->name, want) != 0)
			return FALSE;
	}
	return n > 0;
}

static void node_to_json(GString *out, const MeshProcess__InspectNode *n, int depth)
{
	if (!n || depth > 64) {
		g_string_append(out, "null");
		return;
	}
	switch (n->node_case) {
	case MESH_PROCESS__INSPECT_NODE__NODE_FAILED:
		error_to_json(out, n->failed ? n->failed->error : NULL);
		break;
	case MESH_PROCESS__INSPECT_NODE__NODE_DEPTH_EXHAUSTED:
		g_string_append(out, "{\"error\":\"depth exhausted\"}");
		break;
	case MESH_PROCESS__INSPECT_NODE__NODE_VALUE:
		value_to_json(out, n->value ? n->value->value : NULL);
		break;
	case MESH_PROCESS__INSPECT_NODE__NODE_DIR:
	case MESH_PROCESS__INSPECT_NODE__NODE_DIR_RESOLVED: {
		const MeshProcess__InspectDir *d =
			n->node_case == MESH_PROCESS__INSPECT_NODE__NODE_DIR ? n->dir : n->dir_resolved;
		gboolean array = dir_is_array(d);
		g_string_append_c(out, array ? '[' : '{');
		gboolean first = TRUE;
		for (size_t i = 0; d && i < d->n_entries; i++) {
			const MeshProcess__InspectEntry *e = d->entries[i];
			if (entry_ignored(e))
				continue;
			if (!first)
				g_string_append_c(out, ',');
			first = FALSE;
			if (!array) {
				process_json_string(out, e->name);
				g_string_append_c(out, ':');
			}
			node_to_json(out, e->node, depth + 1);
		}
		g_string_append_c(out, array ? ']' : '}');
		break;
	}
	case MESH_PROCESS__INSPECT_NODE__NODE_DEFERRED:
		/* A node the host deferred further: not followed (doc/libmeshprocess.md). */
		g_string_append(out, "{\"error\":\"deferred\"}");
		break;
	default: /* unevaluated, ignored at the top, unknown */
		g_string_append(out, "null");
	}
}

char *process_inspect_node_to_json(const MeshProcess__InspectNode *node)
{
	GString *out = g_string_new(NULL);
	node_to_json(out, node, 0);
	return g_string_free(out, FALSE);
}
