/* SPDX-License-Identifier: MIT */
/*
 * Cells on ports (upstream mesh_channel cell.rs, reference 4.4).
 *
 * The updater holds one port per cell (a "link") with a handler that
 * records the cell's answers under the updater's Waitable lock: the id it
 * acknowledged, a clone's new port (queued, taken in by the updater's own
 * thread), or the end. Each cell's handler keeps the newest value under the
 * cell's lock and answers Updated(id) after the port lock is released.
 *
 * Ordering (upstream holds the port lock for it): a clone reads the cell's
 * (id, value) and sends NewPort(id) holding send_lock, and every Updated
 * answer is sent holding it too. So an Updated(id') for an update the
 * clone did not see never reaches the updater before the NewPort: the
 * updater then sends the clone the current value and waits for it.
 */
#include <errno.h>
#include <string.h>

#include "channels.pb-c.h"
#include "waitable-private.h"

/* Values: the encoded bytes, checked to decode as the cell's type. */

static gboolean value_encode(ProtobufCMessage *value, uint8_t **ret_data, size_t *ret_size)
{
	MeshPayloadError err;

	if (mesh_payload_count_resources(value) != 0)
		return FALSE;
	MeshPayloadResources *res = mesh_payload_resources_new();
	int r = mesh_payload_encode_alloc(value, ret_data, ret_size, res, &err);
	mesh_payload_resources_free(res);
	if (r < 0) {
		g_critical("mesh cell: cannot encode the value: %s", err.message);
		return FALSE;
	}
	return TRUE;
}

static ProtobufCMessage *value_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
				      size_t size, GError **error)
{
	ProtobufCMessage *msg = NULL;
	MeshPayloadError err;

	if (mesh_payload_decode(desc, data, size, NULL, NULL, &msg, &err) < 0) {
		g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "cell value: %s", err.message);
		return NULL;
	}
	return msg;
}

/* Sends an update {value, id} on @port (no lock held). */
static void send_update(MeshPort *port, const uint8_t *data, size_t size, guint64 id)
{
	MeshChannels__CellUpdate *m = g_new(MeshChannels__CellUpdate, 1);

	mesh_channels__cell_update__init(m);
	m->value.data = size ? g_memdup2(data, size) : NULL;
	m->value.len = size;
	m->id = id;
	port_send(port, mesh_message_new_typed_take(&m->base), FALSE);
}

/* The updater. */

typedef struct {
	MeshPort *port;
	guint64 id;      /* under the updater's lock: the newest id the cell acknowledged */
	gboolean ended;  /* under the updater's lock: the cell is gone */
	MeshCellUpdater *updater; /* weak: the link lives in its array */
} CellLink;

typedef struct {
	guint64 id;
	MeshPort *port;
} NewPort;

struct MeshCellUpdater {
	gint ref;
	Waitable w;
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *value;
	uint8_t *data; /* value's encoding */
	size_t size;
	guint64 current_id;
	GPtrArray *links; /* CellLink *; changed by the owner's thread, under w.lock */
	GQueue new_ports; /* NewPort *, under w.lock */
};

static gboolean updater_ready_locked(gpointer owner)
{
	MeshCellUpdater *u = owner;

	if (u->new_ports.length)
		return TRUE;
	for (guint i = 0; i < u->links->len; i++) {
		CellLink *l = u->links->pdata[i];
		if (!l->ended && l->id < u->current_id)
			return FALSE;
	}
	return TRUE;
}

static gpointer updater_ref(gpointer owner)
{
	MeshCellUpdater *u = owner;
	g_atomic_int_inc(&u->ref);
	return u;
}

static void updater_unref(gpointer owner)
{
	MeshCellUpdater *u = owner;
	if (!g_atomic_int_dec_and_test(&u->ref))
		return;
	waitable_clear(&u->w);
	g_free(u);
}

static const WaitableClass updater_class = {
	.name = "MeshCellUpdater",
	.ready_locked = updater_ready_locked,
	.ref = updater_ref,
	.unref = updater_unref,
};

static void link_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	CellLink *l = data;
	MeshCellUpdater *u = l->updater;
	GError *error = NULL;
	MeshChannels__CellResponse *r = (MeshChannels__CellResponse *)mesh_message_into_typed(
		msg, &mesh_channels__cell_response__descriptor, &error);

	g_mutex_lock(&u->w.lock);
	if (!r) {
		/* Upstream drops a port whose answer does not parse. */
		l->ended = TRUE;
		channel_fail_port_later(d, port, error->message);
		g_error_free(error);
	} else if (r->response_case == MESH_CHANNELS__CELL_RESPONSE__RESPONSE_UPDATED) {
		if (r->updated->id > l->id)
			l->id = r->updated->id;
	} else if (r->response_case == MESH_CHANNELS__CELL_RESPONSE__RESPONSE_NEW_PORT) {
		MeshPort *p = mesh_port_steal_from_field(r->new_port->port);
		if (p) {
			NewPort *np = g_new(NewPort, 1);
			np->id = r->new_port->id;
			np->port = p;
			g_queue_push_tail(&u->new_ports, np);
		}
	}
	waitable_changed_locked(&u->w, d);
	g_mutex_unlock(&u->w.lock);
	if (r)
		mesh_payload_message_free(&r->base);
}

static void link_on_end(MeshPort *port, void *data, Deferred *d)
{
	CellLink *l = data;
	MeshCellUpdater *u = l->updater;

	g_mutex_lock(&u->w.lock);
	l->ended = TRUE;
	waitable_changed_locked(&u->w, d);
	g_mutex_unlock(&u->w.lock);
}

static void link_on_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
	link_on_end(port, data, d);
}

static const PortHandler link_handler = {
	.message = link_on_message,
	.close = link_on_end,
	.fail = link_on_fail,
};

/* Adds a link (the owner's thread, no lock held). */
static void updater_add_link(MeshCellUpdater *u, MeshPort *port, guint64 id)
{
	CellLink *l = g_new0(CellLink, 1);

	l->port = port;
	l->id = id;
	l->updater = u;
	g_mutex_lock(&u->w.lock);
	g_ptr_array_add(u->links, l);
	g_mutex_unlock(&u->w.lock);
	port_set_handler(port, &link_handler, l);
}

/*
 * Takes in the clones' ports (sending the current value to a stale one)
 * and forgets the cells that ended. The owner's thread, no lock held.
 */
static void updater_process(MeshCellUpdater *u)
{
	for (;;) {
		g_mutex_lock(&u->w.lock);
		NewPort *np = g_queue_pop_head(&u->new_ports);
		g_mutex_unlock(&u->w.lock);
		if (!np)
			break;
		if (np->id < u->current_id)
			send_update(np->port, u->data, u->size, u->current_id);
		updater_add_link(u, np->port, np->id);
		g_free(np);
	}
	GPtrArray *dead = NULL;
	g_mutex_lock(&u->w.lock);
	for (guint i = 0; i < u->links->len;) {
		CellLink *l = u->links->pdata[i];
		if (l->ended) {
			if (!dead)
				dead = g_ptr_array_new();
			g_ptr_array_add(dead, g_ptr_array_steal_index_fast(u->links, i));
		} else {
			i++;
		}
	}
	g_mutex_unlock(&u->w.lock);
	for (guint i = 0; dead && i < dead->len; i++) {
		CellLink *l = dead->pdata[i];
		mesh_port_close(l->port); /* clears the handler: it no longer runs */
		g_free(l);
	}
	if (dead)
		g_ptr_array_free(dead, TRUE);
}

MeshCellUpdater *mesh_cell_updater_new(ProtobufCMessage *value)
{
	uint8_t *data = NULL;
	size_t size = 0;

	g_return_val_if_fail(value, NULL);
	if (!value_encode(value, &data, &size)) {
		mesh_payload_message_free(value);
		g_return_val_if_fail(!"a cell value without resources", NULL);
	}
	MeshCellUpdater *u = g_new0(MeshCellUpdater, 1);
	u->ref = 1;
	waitable_init(&u->w, &updater_class, u);
	u->desc = value->descriptor;
	u->value = value;
	u->data = data;
	u->size = size;
	u->links = g_ptr_array_new();
	g_queue_init(&u->new_ports);
	return u;
}

const ProtobufCMessage *mesh_cell_updater_get(MeshCellUpdater *updater)
{
	g_return_val_if_fail(updater, NULL);
	return updater->value;
}

guint mesh_cell_updater_count_cells(MeshCellUpdater *updater)
{
	g_return_val_if_fail(updater, 0);
	g_mutex_lock(&updater->w.lock);
	guint n = updater->links->len;
	g_mutex_unlock(&updater->w.lock);
	return n;
}

static MeshCell *cell_new(MeshPort *port, const ProtobufCMessageDescriptor *desc, guint64 id,
			  uint8_t *data, size_t size);

MeshCell *mesh_cell_updater_new_cell(MeshCellUpdater *updater)
{
	MeshPort *a, *b;

	g_return_val_if_fail(updater, NULL);
	mesh_port_new_pair(&a, &b);
	updater_add_link(updater, a, updater->current_id);
	return cell_new(b, updater->desc, updater->current_id,
			updater->size ? g_memdup2(updater->data, updater->size) : NULL,
			updater->size);
}

void mesh_cell_new(ProtobufCMessage *value, MeshCellUpdater **ret_updater, MeshCell **ret_cell)
{
	if (!ret_updater || !ret_cell) {
		mesh_payload_message_free(value);
		g_return_if_fail(ret_updater && ret_cell);
	}
	*ret_updater = mesh_cell_updater_new(value);
	*ret_cell = *ret_updater ? mesh_cell_updater_new_cell(*ret_updater) : NULL;
}

gboolean mesh_cell_updater_set(MeshCellUpdater *updater, ProtobufCMessage *value,
			       gint64 timeout_us, GError **error)
{
	uint8_t *data = NULL;
	size_t size = 0;
	MeshIoHook *hook = NULL;
	MeshPort *wait_port = NULL;

	if (!updater || !value || (error && *error) || value->descriptor != updater->desc) {
		gboolean same_type = updater && value && value->descriptor == updater->desc;
		mesh_payload_message_free(value); /* taken in all cases */
		g_return_val_if_fail(updater && value && (error == NULL || *error == NULL), FALSE);
		g_return_val_if_fail(same_type, FALSE);
	}
	if (!timeout_check(timeout_us, G_STRFUNC, error)) {
		mesh_payload_message_free(value);
		return FALSE;
	}
	if (!value_encode(value, &data, &size)) {
		mesh_payload_message_free(value);
		g_return_val_if_fail(!"a cell value without resources", FALSE);
	}
	mesh_payload_message_free(updater->value);
	free(updater->data);
	updater->value = value;
	updater->data = data;
	updater->size = size;

	/* Clones made before this value was set get it too. */
	updater_process(updater);
	g_mutex_lock(&updater->w.lock);
	updater->current_id++;
	GPtrArray *ports = g_ptr_array_new_with_free_func((GDestroyNotify)port_unref);
	for (guint i = 0; i < updater->links->len; i++) {
		CellLink *l = updater->links->pdata[i];
		if (!l->ended)
			g_ptr_array_add(ports, port_ref(l->port));
	}
	g_mutex_unlock(&updater->w.lock);
	for (guint i = 0; i < ports->len; i++)
		send_update(ports->pdata[i], data, size, updater->current_id);
	if (ports->len)
		wait_port = port_ref(ports->pdata[0]);
	g_ptr_array_free(ports, TRUE);

	gint64 deadline = channel_deadline(timeout_us);
	gboolean done = FALSE;
	for (;;) {
		updater_process(updater);
		g_mutex_lock(&updater->w.lock);
		done = updater->new_ports.length == 0 && updater_ready_locked(updater);
		if (done || timeout_us == 0 ||
		    !waitable_wait_locked(&updater->w, wait_port, deadline, &hook)) {
			g_mutex_unlock(&updater->w.lock);
			break;
		}
		g_mutex_unlock(&updater->w.lock);
	}
	mesh_io_hook_unref(hook);
	if (wait_port)
		port_unref(wait_port);
	if (!done)
		waitable_set_timeout_error(error, timeout_us, "cell update");
	return done;
}

void mesh_cell_updater_free(MeshCellUpdater *updater)
{
	NewPort *np;

	if (!updater)
		return;
	for (guint i = 0; i < updater->links->len; i++) {
		CellLink *l = updater->links->pdata[i];
		mesh_port_close(l->port); /* clears the handler: it no longer runs */
		g_free(l);
	}
	g_ptr_array_free(updater->links, TRUE);
	while ((np = g_queue_pop_head(&updater->new_ports))) {
		mesh_port_close(np->port);
		g_free(np);
	}
	mesh_payload_message_free(updater->value);
	free(updater->data);
	updater_unref(updater);
}

/* The cell. */

struct MeshCell {
	gint ref;
	Waitable w;
	MeshPort *port;
	const ProtobufCMessageDescriptor *desc;
	GMutex send_lock; /* orders NewPort against Updated (see above) */
	/* Under w.lock: */
	guint64 id;
	uint8_t *data; /* the value's encoding (g_malloc) */
	size_t size;
	guint64 last_id; /* the id last observed (wait_next, callback) */
};

static gboolean cell_ready_locked(gpointer owner)
{
	MeshCell *c = owner;
	return c->id != c->last_id;
}

static void cell_dispatch_locked(gpointer owner)
{
	MeshCell *c = owner;
	c->last_id = c->id;
}

static gpointer cell_ref(gpointer owner)
{
	MeshCell *c = owner;
	g_atomic_int_inc(&c->ref);
	return c;
}

static void cell_unref(gpointer owner)
{
	MeshCell *c = owner;
	if (!g_atomic_int_dec_and_test(&c->ref))
		return;
	g_free(c->data);
	g_mutex_clear(&c->send_lock);
	waitable_clear(&c->w);
	g_free(c);
}

static const WaitableClass cell_class = {
	.name = "MeshCell",
	.ready_locked = cell_ready_locked,
	.dispatch_locked = cell_dispatch_locked,
	.ref = cell_ref,
	.unref = cell_unref,
};

typedef struct {
	MeshCell *cell; /* strong */
	MeshPort *port; /* strong */
	guint64 id;
} Answer;

static void cell_answer_run(void *data)
{
	Answer *a = data;
	MeshChannels__CellResponse *r = g_new(MeshChannels__CellResponse, 1);
	MeshChannels__CellUpdated *u = g_new(MeshChannels__CellUpdated, 1);

	mesh_channels__cell_response__init(r);
	mesh_channels__cell_updated__init(u);
	u->id = a->id;
	r->response_case = MESH_CHANNELS__CELL_RESPONSE__RESPONSE_UPDATED;
	r->updated = u;
	g_mutex_lock(&a->cell->send_lock);
	port_send(a->port, mesh_message_new_typed_take(&r->base), FALSE);
	g_mutex_unlock(&a->cell->send_lock);
	port_unref(a->port);
	cell_unref(a->cell);
	g_free(a);
}

static void cell_on_message(MeshPort *port, void *data, MeshMessage *msg, Deferred *d)
{
	MeshCell *c = data;
	GError *error = NULL;
	MeshChannels__CellUpdate *m = (MeshChannels__CellUpdate *)mesh_message_into_typed(
		msg, &mesh_channels__cell_update__descriptor, &error);
	ProtobufCMessage *check = NULL;

	if (m)
		check = value_decode(c->desc, m->value.data, m->value.len, &error);
	if (!check) {
		/* Upstream fails the port for a message that does not parse. */
		channel_fail_port_later(d, port, error->message);
		g_error_free(error);
		if (m)
			mesh_payload_message_free(&m->base);
		return;
	}
	mesh_payload_message_free(check);
	g_mutex_lock(&c->w.lock);
	if (m->id > c->id) {
		g_free(c->data);
		c->data = m->value.len ? g_memdup2(m->value.data, m->value.len) : NULL;
		c->size = m->value.len;
		c->id = m->id;
		waitable_changed_locked(&c->w, d);
		Answer *a = g_new(Answer, 1);
		a->cell = cell_ref(c);
		a->port = port_ref(port);
		a->id = m->id;
		deferred_call(d, cell_answer_run, a); /* after the port lock is released */
	}
	g_mutex_unlock(&c->w.lock);
	mesh_payload_message_free(&m->base);
}

static void cell_on_close(MeshPort *port, void *data, Deferred *d)
{
	/* The updater is gone: the cell keeps its value (upstream). */
}

static void cell_on_fail(MeshPort *port, void *data, const GError *error, Deferred *d)
{
}

static const PortHandler cell_handler = {
	.message = cell_on_message,
	.close = cell_on_close,
	.fail = cell_on_fail,
};

static MeshCell *cell_new(MeshPort *port, const ProtobufCMessageDescriptor *desc, guint64 id,
			  uint8_t *data, size_t size)
{
	MeshCell *c = g_new0(MeshCell, 1);

	c->ref = 1;
	waitable_init(&c->w, &cell_class, c);
	g_mutex_init(&c->send_lock);
	c->port = port;
	c->desc = desc;
	c->id = id;
	c->last_id = id;
	c->data = data;
	c->size = size;
	port_set_handler(port, &cell_handler, c);
	return c;
}

ProtobufCMessage *mesh_cell_get(MeshCell *cell)
{
	g_return_val_if_fail(cell, NULL);
	g_mutex_lock(&cell->w.lock);
	/* Checked when it came: it decodes. */
	ProtobufCMessage *v = value_decode(cell->desc, cell->data, cell->size, NULL);
	g_mutex_unlock(&cell->w.lock);
	return v;
}

gboolean mesh_cell_wait_next(MeshCell *cell, gint64 timeout_us, GError **error)
{
	MeshIoHook *hook = NULL;

	g_return_val_if_fail(cell, FALSE);
	g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
	if (!timeout_check(timeout_us, G_STRFUNC, error))
		return FALSE;
	g_mutex_lock(&cell->w.lock);
	gboolean ready = cell_ready_locked(cell) ||
			 (timeout_us != 0 && waitable_wait_locked(&cell->w, cell->port,
								  channel_deadline(timeout_us),
								  &hook));
	if (ready) {
		cell->last_id = cell->id;
		waitable_changed_locked(&cell->w, NULL);
	}
	g_mutex_unlock(&cell->w.lock);
	mesh_io_hook_unref(hook);
	if (!ready)
		waitable_set_timeout_error(error, timeout_us, "cell wait");
	return ready;
}

void mesh_cell_set_callback(MeshCell *cell, GMainContext *context, MeshCellFunc func,
			    gpointer user_data, GDestroyNotify notify)
{
	g_return_if_fail(cell);
	waitable_set_callback(&cell->w, context, (WaitableFunc)(void (*)(void))func, user_data,
			      notify);
}

#ifdef G_OS_WIN32
MeshOsHandle mesh_cell_get_handle(MeshCell *cell)
{
	g_return_val_if_fail(cell, MESH_OS_HANDLE_INVALID);
	return waitable_get_handle(&cell->w);
}
#else
int mesh_cell_get_fd(MeshCell *cell)
{
	g_return_val_if_fail(cell, -EINVAL);
	return waitable_get_fd(&cell->w);
}
#endif

MeshCell *mesh_cell_clone(MeshCell *cell)
{
	MeshPort *left, *right;

	g_return_val_if_fail(cell, NULL);
	mesh_port_new_pair(&left, &right);
	MeshChannels__CellResponse *r = g_new(MeshChannels__CellResponse, 1);
	MeshChannels__CellNewPort *np = g_new(MeshChannels__CellNewPort, 1);
	mesh_channels__cell_response__init(r);
	mesh_channels__cell_new_port__init(np);
	r->response_case = MESH_CHANNELS__CELL_RESPONSE__RESPONSE_NEW_PORT;
	r->new_port = np;
	np->port = mesh_port_into_field(left);

	g_mutex_lock(&cell->send_lock);
	g_mutex_lock(&cell->w.lock);
	guint64 id = cell->id;
	uint8_t *data = cell->size ? g_memdup2(cell->data, cell->size) : NULL;
	size_t size = cell->size;
	g_mutex_unlock(&cell->w.lock);
	np->id = id;
	port_send(cell->port, mesh_message_new_typed_take(&r->base), FALSE);
	g_mutex_unlock(&cell->send_lock);
	return cell_new(right, cell->desc, id, data, size);
}

static void cell_destroy(MeshCell *cell)
{
	waitable_set_callback(&cell->w, NULL, NULL, NULL, NULL);
	cell_unref(cell);
}

void mesh_cell_free(MeshCell *cell)
{
	if (!cell)
		return;
	mesh_port_close(cell->port);
	cell_destroy(cell);
}

MeshMessage *mesh_cell_into_message(MeshCell *cell)
{
	g_return_val_if_fail(cell, NULL);
	port_set_handler(cell->port, NULL, NULL); /* no hook runs after this */
	MeshChannels__CellEncoded *m = g_new(MeshChannels__CellEncoded, 1);
	mesh_channels__cell_encoded__init(m);
	g_mutex_lock(&cell->w.lock);
	m->id = cell->id;
	m->value.data = cell->size ? g_memdup2(cell->data, cell->size) : NULL;
	m->value.len = cell->size;
	g_mutex_unlock(&cell->w.lock);
	m->port = mesh_port_into_field(cell->port);
	cell_destroy(cell);
	return mesh_message_new_typed_take(&m->base);
}

MeshCell *mesh_cell_from_message(MeshMessage *msg, const ProtobufCMessageDescriptor *desc,
				 GError **error)
{
	if (!desc || (error && *error)) {
		mesh_message_free(msg);
		g_return_val_if_fail(desc && (error == NULL || *error == NULL), NULL);
	}
	g_return_val_if_fail(msg, NULL);
	MeshChannels__CellEncoded *m = (MeshChannels__CellEncoded *)mesh_message_into_typed(
		msg, &mesh_channels__cell_encoded__descriptor, error);
	if (!m)
		return NULL;
	ProtobufCMessage *check = value_decode(desc, m->value.data, m->value.len, error);
	MeshPort *port = mesh_port_steal_from_field(m->port);
	if (!check || !port) {
		if (check && !port)
			g_set_error(error, MESH_ERROR, MESH_ERROR_CORRUPTION, "a cell without its port");
		mesh_payload_message_free(check);
		mesh_port_close(port);
		mesh_payload_message_free(&m->base);
		return NULL;
	}
	mesh_payload_message_free(check);
	uint8_t *data = m->value.len ? g_memdup2(m->value.data, m->value.len) : NULL;
	MeshCell *c = cell_new(port, desc, m->id, data, m->value.len);
	mesh_payload_message_free(&m->base);
	return c;
}
